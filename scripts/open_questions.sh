#!/usr/bin/env bash
# The paper's two open questions on a GAttANet checkpoint (MODEL, default the shipped model: the
# study in docs/results.md, "The paper's open questions, on the shipped model"; the one in
# docs/results-first-model.md, "Open questions", ran on the first CIFAR-10 model):
#   1. iterations: its T=1 head run at test-time T=2, T=3; a head trained at T=2
#   2. joint fine-tuning: backbone + head together vs the backbone alone (same budget, recipe,
#      data order), both from MODEL
# Resumable (run it again to continue; raise the budgets to extend a run); about an hour
# (shipped model) to 1.5 hours (first model) on 2 CPU cores. A resumed run continues whatever
# RUNS holds: give each MODEL its own RUNS.
#   bash scripts/open_questions.sh [DATA] [RUNS]
set -euo pipefail
DATA=${1:-../shared/data/cifar10-train-jpg.tar.gz}
RUNS=${2:-runs/open-questions}
BIN=${BIN:-.venv/bin}
MODEL=${MODEL:-models/cifar10-toy-d16.pt}
FT_EPOCHS=${FT_EPOCHS:-8}    # fine-tuning budget, both arms
FT_LR=${FT_LR:-1e-4}
T2_EPOCHS=${T2_EPOCHS:-14}   # T=2 head, the shipped head's recipe and seed
mkdir -p "$RUNS"
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }

# 1a. test-time iterations of the shipped T=1 head
"$BIN/gatta-train" compare "$MODEL" "$MODEL@2" "$MODEL@3" --data "$DATA" --json > "$RUNS/test-time-iterations.json"
"$BIN/gatta-train" compare "$MODEL" "$MODEL@2" "$MODEL@3" --data "$DATA" > "$RUNS/test-time-iterations.txt"

# 2. joint fine-tuning and its control, same budget, learning rate, seed and data order
"$BIN/gatta-train" finetune --ckpt "$MODEL" --train joint --data "$DATA" --out "$RUNS/joint" \
    --epochs "$FT_EPOCHS" --lr "$FT_LR" $(resume "$RUNS/joint")
"$BIN/gatta-train" finetune --ckpt "$MODEL" --train backbone --data "$DATA" --out "$RUNS/backbone-only" \
    --epochs "$FT_EPOCHS" --lr "$FT_LR" $(resume "$RUNS/backbone-only")

# 1b. a head trained at T=2 on the shipped (frozen) backbone
"$BIN/gatta-train" head --backbone-ckpt "$MODEL" --data "$DATA" --out "$RUNS/head-t2" --d 16 \
    --iterations 2 --epochs "$T2_EPOCHS" --patience "$T2_EPOCHS" --precision fp32 $(resume "$RUNS/head-t2")

# all side by side on the same validation images, against the shipped pair
ENTRIES=("$MODEL" "$MODEL@2" "$MODEL@3" "$RUNS/head-t2/best.pt" "$RUNS/head-t2/best.pt@1"
         "$RUNS/head-t2/last.pt" "$RUNS/joint/last.pt" "$RUNS/backbone-only/last.pt")
"$BIN/gatta-train" compare "${ENTRIES[@]}" --data "$DATA" --json > "$RUNS/compare.json"
"$BIN/gatta-train" compare "${ENTRIES[@]}" --data "$DATA" | tee "$RUNS/compare.txt"
"$BIN/gatta-train" compare "${ENTRIES[@]}" --data "$DATA" --noise 0.05 | tee "$RUNS/compare-noise0.05.txt"
