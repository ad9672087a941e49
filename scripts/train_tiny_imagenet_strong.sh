#!/usr/bin/env bash
# The ResNet evidence on a stronger backbone: Tiny-ImageNet-200, ResNet18 (the paper's
# structure, torchvision's standard stem) trained from scratch for 80 epochs, then the paper's
# ResNet heads d=8 and d=16, each against its frozen backbone and against a continuation control
# of the same length. Every stage resumes: run the script again to continue where it stopped.
#   bash scripts/train_tiny_imagenet_strong.sh [TINY_IMAGENET_DIR] [RUNS]
#
# Fixed before the backbone started (docs/results.md, "A stronger Tiny-ImageNet backbone"):
# 1. backbone: the project's ResNet recipe (SGD + Nesterov 0.9, lr 0.1, batch 128, weight decay
#    5e-4, random-resized crop + flip, cosine decay to 0) over 80 epochs, bf16 autocast on the CPU
#    (fp32 weights; 1.8x the fp32 step here), 64 px, evaluated on the whole picture; the same
#    10,000-picture selection split (seed 0) as the shipped model. Frozen at its last epoch.
# 2. heads: the paper's ResNet recipe (Adam 3e-4, batch 8, batch norm on keys/queries, layer
#    norm on gatta, dropout 0.25, patience 1, at most 10 epochs), d=8 and d=16, fp32.
# 3. controls: the backbone alone, from the frozen backbone, as many pictures as each head saw
#    (its epochs), at the backbone recipe's rate / 10 (SGD 0.01, constant), head kept.
# 4. paired comparisons on the selection split: each head's best and last against its frozen
#    backbone and against its control's last epoch.
# 5. the model to ship: the head (d=8 or d=16) whose best.pt scores the higher GAttANet accuracy
#    on the selection split, if its backbone reaches 50% there; its best.pt is what the trainer
#    ships. The official val/ (the test set) is scored once, after that choice, for both heads.
set -euo pipefail
DATA=${1:-../data/tiny-imagenet-200}
RUNS=${2:-runs/tiny-imagenet-strong}
BIN=${BIN:-.venv/bin}
mkdir -p "$RUNS"
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }
write_once() {  # file, gatta-train args...: never leave half a file
  local file=$1; shift
  [ -f "$file" ] || { "$BIN/gatta-train" "$@" > "$file.tmp" && mv "$file.tmp" "$file"; }
}

[ -f "$RUNS/backbone/done" ] || { "$BIN/gatta-train" backbone --recipe tiny-imagenet-backbone-80 --data "$DATA" \
    --out "$RUNS/backbone" $(resume "$RUNS/backbone") && touch "$RUNS/backbone/done"; }

for d in 8 16; do
  # the head on the backbone run's last epoch (a run folder freezes its last.pt)
  "$BIN/gatta-train" head --recipe paper-resnet-head --d "$d" --backbone-ckpt "$RUNS/backbone" --data "$DATA" \
      --data-mode stream --out "$RUNS/head-d$d" $(resume "$RUNS/head-d$d")
  epochs=$(wc -l < "$RUNS/head-d$d/log.jsonl")  # the control sees as many pictures as the head did
  "$BIN/gatta-train" finetune --recipe tiny-imagenet-continuation --epochs "$epochs" --ckpt "$RUNS/head-d$d/best.pt" \
      --data "$DATA" --out "$RUNS/control-d$d" $(resume "$RUNS/control-d$d")
  write_once "$RUNS/compare-d$d.json" compare "$RUNS/control-d$d/last.pt" "$RUNS/head-d$d/best.pt" \
      "$RUNS/head-d$d/last.pt" --data "$DATA" --json
  write_once "$RUNS/head-d$d/eval-val.json" eval --ckpt "$RUNS/head-d$d/best.pt" --data "$DATA" --lesion singles --json
done
# the choice (rule 5) is made from compare-d8.json and compare-d16.json before this step runs
for d in 8 16; do
  write_once "$RUNS/head-d$d/eval-test.json" eval --ckpt "$RUNS/head-d$d/best.pt" --data "$DATA" --split test --json
done
echo "done: $RUNS (backbone, head-d8, head-d16, control-d*, compare-d*.json, eval-*.json)"
