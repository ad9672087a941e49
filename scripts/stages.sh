# The training stages of scripts/train_default.sh and scripts/train_converged.sh, sourced by both
# so that a stage has one definition. Every stage is resumable and skips what is done. The
# numbers of each run live in its named recipe (`gatta-train recipes`), not here; the caller sets
# DATA and RUNS (BIN: where gatta-train lives).
BIN=${BIN:-.venv/bin}
mkdir -p "$RUNS"

resume() { [ -f "$1/last.pt" ] && echo --resume || true; }

once() {  # file, gatta-train args...: run unless the file exists; never leave half a file
  local file=$1; shift
  [ -f "$file" ] && return 0
  "$BIN/gatta-train" "$@" > "$file.tmp" && mv "$file.tmp" "$file"
}

backbone_stage() {  # out, gatta-train backbone args...: run to its recipe's end, once
  local out=$1; shift
  [ -f "$RUNS/$out/done" ] && return 0  # a resumed finished run would train past its stopping rule
  "$BIN/gatta-train" backbone --data "$DATA" --out "$RUNS/$out" "$@" $(resume "$RUNS/$out")
  touch "$RUNS/$out/done"
}

head_stage() {  # backbone run, head out, extra args...: the shipped toy head on the run's last epoch
  local bb=$1 out=$2; shift 2
  # --backbone-ckpt RUN freezes the run's last epoch, not best.pt: best.pt is the maximum over
  # noisy epochs of the very split the gain is measured on (docs/results-first-model.md)
  "$BIN/gatta-train" head --backbone-ckpt "$RUNS/$bb" --data "$DATA" --recipe shipped-toy-head \
      --out "$RUNS/$out" "$@" $(resume "$RUNS/$out")
}

cosine_pair() {  # name suffix, seed: the shipped recipe (docs/results.md, "Training record")
  backbone_stage "backbone-cosine$1" --recipe shipped-toy-backbone --seed "$2"
  head_stage "backbone-cosine$1" "head-cosine$1" --seed "$2"
}

continuation() {  # head out, control out: the backbone alone, the head kept (recipe toy-continuation)
  "$BIN/gatta-train" finetune --ckpt "$RUNS/$1/best.pt" --recipe toy-continuation --data "$DATA" \
      --out "$RUNS/$2" $(resume "$RUNS/$2")
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
