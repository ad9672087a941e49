# The training stages of scripts/train_default.sh and scripts/train_converged.sh, sourced by both
# so that a stage has one definition. Every stage is resumable and skips what is done.
# The caller sets DATA and RUNS; BIN (where gatta-train lives), DECAY_EPOCHS, HEAD_EPOCHS and
# HEAD_PATIENCE have the shipped recipe's defaults.
BIN=${BIN:-.venv/bin}
DECAY_EPOCHS=${DECAY_EPOCHS:-150}
HEAD_EPOCHS=${HEAD_EPOCHS:-100}
HEAD_PATIENCE=${HEAD_PATIENCE:-30}
mkdir -p "$RUNS"

resume() { [ -f "$1/last.pt" ] && echo --resume || true; }

once() {  # file, gatta-train args...: run unless the file exists; never leave half a file
  local file=$1; shift
  [ -f "$file" ] && return 0
  "$BIN/gatta-train" "$@" > "$file.tmp" && mv "$file.tmp" "$file"
}

backbone() {  # out, extra args...
  local out=$1; shift
  [ -f "$RUNS/$out.frozen.pt" ] && return 0  # done (its last epoch frozen for the head)
  "$BIN/gatta-train" backbone --data "$DATA" --out "$RUNS/$out" --precision fp32 "$@" $(resume "$RUNS/$out")
  # The head freezes the backbone's last epoch, not best.pt: best.pt is the maximum over noisy
  # epochs of the very split the gain is measured on, a baseline that regresses on any change
  # (docs/results-first-model.md, "Which backbone checkpoint is the baseline").
  [ -f "$RUNS/$out.frozen.pt" ] || cp "$RUNS/$out/last.pt" "$RUNS/$out.frozen.pt"
}

head() {  # backbone name, head out, extra args...: the paper's d=16 toy head, fp32
  local bb=$1 out=$2; shift 2
  "$BIN/gatta-train" head --backbone-ckpt "$RUNS/$bb.frozen.pt" --data "$DATA" --d 16 --precision fp32 \
      --epochs "$HEAD_EPOCHS" --patience "$HEAD_PATIENCE" --out "$RUNS/$out" "$@" $(resume "$RUNS/$out")
}

cosine_pair() {  # name suffix, seed: the shipped recipe (docs/results.md, "Training record")
  backbone "backbone-cosine$1" --epochs "$DECAY_EPOCHS" --lr-schedule cosine --patience "$DECAY_EPOCHS" --seed "$2"
  head "backbone-cosine$1" "head-cosine$1" --seed "$2"
}

continuation() {  # head out, control out: the backbone alone 8 more epochs at 1e-4, the head kept
  "$BIN/gatta-train" finetune --ckpt "$RUNS/$1/best.pt" --train backbone --data "$DATA" \
      --out "$RUNS/$2" --epochs 8 --lr 1e-4 $(resume "$RUNS/$2")
}

evaluate() {  # head out: lesions, noise (Fig. 2a) and the last epoch, each written once
  local out=$RUNS/$1
  once "$out/eval-val.json" eval --ckpt "$out/best.pt" --data "$DATA" --lesion singles --json
  once "$out/eval-val-noise.json" eval --ckpt "$out/best.pt" --data "$DATA" --json \
      --noise 0.01 --noise 0.02 --noise 0.03 --noise 0.04 --noise 0.05 --noise 0.1 --noise 0.25
  once "$out/eval-val-last.json" eval --ckpt "$out/last.pt" --data "$DATA" --json
}

compare() {  # json name, checkpoints... (the first is the reference): paired, written once
  local file=$RUNS/$1.json; shift
  once "$file" compare "$@" --data "$DATA" --json
}
