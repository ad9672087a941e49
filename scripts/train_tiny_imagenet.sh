#!/usr/bin/env bash
# A ResNet18 GAttANet on Tiny-ImageNet-200 (200 ImageNet classes, 64x64 JPEGs): the paper's
# ResNet experiment at the scale one machine allows. Resumable: run it again to continue any
# stage. Selection uses a seeded 10,000-picture split carved from train/; the official val/ is
# the test set, scored once at the end (step 4) and never used to choose anything.
#   bash scripts/train_tiny_imagenet.sh [TINY_IMAGENET_DIR] [RUNS]
#
# 1. ResNet18 backbone from scratch, 64 px (the stem then gives 32x32 maps), streamed with
#    random-resized crop + flip, SGD + Nesterov, lr 0.1, batch 128, cosine (recipe tiny-imagenet-backbone);
#    evaluation sees the whole 64 px picture (--crop-pct 1). Not in the paper (its ResNets were
#    pretrained on ImageNet-1k). 2 CPU cores: ~155 img/s fed (scripts/bench_data.py), about
#    10 minutes an epoch.
# 2. The d=8 head (and d=16 with D16=1) on the frozen last backbone epoch, the paper's ResNet
#    recipe: Adam 3e-4, batch 8, batch norm on keys/queries, layer norm on gatta, key/query
#    dropout 0.25, early stopping with patience 1 (at most 2 epochs: recipe tiny-imagenet-head).
# 3. Baseline vs GAttANet on the selection split with paired CIs and the fixed/broken counts (eval),
#    lesions (at noise 0), noise 0.05 and 0.1.
# 4. The test set, once.
# 5. The d=8 model shipped (backbone in half precision, the FP32 model's answers kept for the
#    export to verify against) as models/tiny-imagenet-resnet18-d8.pt, and its samples picked.
# Budget of the shipped model (2 CPU cores): 8 backbone epochs (~85 min), at most 2 head epochs
# (~15 min each: 90,000 pictures, 11,250 steps of batch 8), fixed before the head ran. Every
# number lives in the named recipes tiny-imagenet-backbone and tiny-imagenet-head
# (`gatta-train recipes`); this script only sequences the stages (scripts/stages.sh).
set -euo pipefail
DATA=${1:-../data/tiny-imagenet-200}
RUNS=${2:-runs/tiny-imagenet}
source "$(dirname "$0")/stages.sh"

backbone_stage backbone --recipe tiny-imagenet-backbone

heads=(8)
[ "${D16:-0}" = 1 ] && heads+=(16)
for d in "${heads[@]}"; do
  # --backbone-ckpt RUN freezes the run's last epoch (the schedule's end), not its best
  "$BIN/gatta-train" head --recipe tiny-imagenet-head --d "$d" --backbone-ckpt "$RUNS/backbone" --data "$DATA" \
      --out "$RUNS/head-d$d" $(resume "$RUNS/head-d$d")
  once "$RUNS/head-d$d/eval-val.json" eval --ckpt "$RUNS/head-d$d/best.pt" --data "$DATA" --lesion singles --json
  once "$RUNS/head-d$d/eval-val-noise.json" eval --ckpt "$RUNS/head-d$d/best.pt" --data "$DATA" \
      --noise 0.05 --noise 0.1 --json
done
# 4. scored once: the official val/ of Tiny-ImageNet
for d in "${heads[@]}"; do
  once "$RUNS/head-d$d/eval-test.json" eval --ckpt "$RUNS/head-d$d/best.pt" --data "$DATA" --split test --json
done
# 5. shipped
SHIP=${SHIP:-models/tiny-imagenet-resnet18-d8.pt}
"$BIN/gatta-train" ship "$RUNS/head-d8/best.pt" --out "$SHIP" --data "$DATA"
"$BIN/python" scripts/pick_samples.py --ckpt "$SHIP" --data "$DATA" --out samples/tiny-imagenet \
    goldfish monarch "school bus" lemon "golden retriever" koala pizza jellyfish "sports car" teapot
echo "done: $RUNS (backbone, head-d*, eval-*.json); shipped $SHIP"
