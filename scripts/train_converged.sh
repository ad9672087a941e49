#!/usr/bin/env bash
# The paper's CIFAR-10 row on a converged baseline, and its controls (docs/results.md). Every
# stage is resumable: run the script again to continue where it stopped.
#   bash scripts/train_converged.sh [DATA] [RUNS]
#
# 1. the toy backbone with the paper's recipe to its stopping rule: Adam 1e-3 constant, batch
#    128, the paper's augmentation, early stopping with patience 50, at most 500 epochs
#    (~28 s an epoch on 2 quiet CPU cores);
# 2. a second backbone with a learning-rate decay (a stated deviation from the paper): the same
#    recipe with a cosine decay over 150 epochs (recipe shipped-toy-backbone), run to its end;
# 3. the d=16 head (the paper's toy head recipe, fp32) on the last epoch of each, step 1's
#    first (it runs before step 2's backbone); stopping rule stated before the run (recipe
#    shipped-toy-head): at most 100 epochs, patience 30 on the validation split;
# 4. the controls: the backbone-only continuation (8 epochs at 1e-4) of step 1's backbone (run
#    right after step 1's head: it takes minutes) and of step 2's (after its head), and the
#    parameter-matched toy-wide backbone to step 1's rule;
# 5. a second seed of step 2's pair, the shipped recipe (run-to-run spread);
# 6. a third seed of it (the spread's first usable standard deviation).
# After each head: HEAD/eval-val.json (lesions), eval-val-noise.json (Fig. 2a's noise levels),
# eval-val-last.json (its last epoch); after each control, the paired comparisons quoted in
# docs/results.md (*-compare*.json, head-cosine-*.json); each written once.
# Which pair replaced models/cifar10-toy-d16.pt (rule fixed before the cosine head ran): of
# head-p50 and head-cosine, the one whose best.pt (the checkpoint the trainer ships, as for the
# first model) scores the higher GAttANet accuracy on the validation split, if that is above
# the first model's 78.64% there. Its best epoch is chosen on that split, like the first one's.
# head-cosine won (80.30% vs 79.68%); scripts/train_default.sh retrains it alone.
set -euo pipefail
DATA=${1:-../shared/data/cifar10-train-jpg.tar.gz}
RUNS=${2:-runs/converged}
source "$(dirname "$0")/stages.sh"

# Step 1 ran to its stopping rule (epoch 218) and its last epoch is committed: start from it.
if [ ! -f "$RUNS/backbone-p50/done" ]; then
  mkdir -p "$RUNS/backbone-p50" && cp models/cifar10-toy-backbone-p50.pt "$RUNS/backbone-p50/last.pt"
  touch "$RUNS/backbone-p50/done"
fi
backbone_stage backbone-p50 --recipe paper-toy-backbone
head_stage backbone-p50 head-p50  # first: the paper's recipe end to end
evaluate head-p50
# the continuation control (8 backbone epochs at 1e-4, the head kept) is short: before step 2
continuation head-p50 continuation-p50
R=$RUNS
compare continuation-compare-last "$R/continuation-p50/last.pt" "$R/head-p50/best.pt" "$R/head-p50/last.pt" \
    "$R/continuation-p50/best.pt"
compare continuation-compare-best "$R/continuation-p50/best.pt" "$R/head-p50/best.pt" "$R/head-p50/last.pt"
cosine_pair "" 0
evaluate head-cosine
# the same continuation control on the cosine backbone (its rate ended at 0; 8 epochs at 1e-4)
continuation head-cosine continuation-cosine
compare head-cosine-compare-heads "$R/head-cosine/best.pt" "$R/head-cosine/last.pt" "$R/head-p50/best.pt" \
    "$R/head-p50/last.pt" "$R/continuation-p50/last.pt"
compare head-cosine-last-vs-head-p50-last "$R/head-cosine/last.pt" "$R/head-p50/last.pt"
compare head-cosine-vs-continuation "$R/continuation-p50/last.pt" "$R/head-cosine/best.pt" "$R/head-cosine/last.pt"
compare continuation-cosine-compare "$R/continuation-cosine/last.pt" "$R/head-cosine/best.pt" "$R/head-cosine/last.pt"
backbone_stage toy-wide-p50 --recipe paper-toy-backbone --backbone toy-wide
# the paper's informal test: the parameter-matched backbone alone (its last epoch, the reference)
# against GAttANet on the backbone trained to the same rule, and the shipped pair for scale
compare toy-wide-compare "$R/toy-wide-p50/last.pt" "$R/head-p50/best.pt" "$R/head-p50/last.pt" \
    "$R/toy-wide-p50/best.pt" "$R/head-cosine/best.pt" "$R/head-cosine/last.pt"
# 5. run-to-run spread: the shipped recipe (step 2's pair) again with seed 1 (initialisation,
#    data order and augmentation; the validation split stays the same)
cosine_pair -seed1 1
evaluate head-cosine-seed1
compare seed-compare "$R/head-cosine/best.pt" "$R/head-cosine-seed1/best.pt" "$R/head-cosine/last.pt" \
    "$R/head-cosine-seed1/last.pt"
# 6. a third seed, so that the spread has a first standard deviation (two runs give a difference)
cosine_pair -seed2 2
evaluate head-cosine-seed2
compare seed2-compare "$R/head-cosine/best.pt" "$R/head-cosine-seed2/best.pt" "$R/head-cosine/last.pt" \
    "$R/head-cosine-seed2/last.pt" "$R/head-cosine-seed1/best.pt" "$R/head-cosine-seed1/last.pt"
echo "done: $RUNS"
