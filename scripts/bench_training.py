"""Head-training throughput next to the frozen backbone's own forward and backward.

Prints images/s per variant, measured side by side in one run on the same batch, and ratios
to the backbone's forward pass. Usage:

    python scripts/bench_training.py [--backbone toy] [--batch 128] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from gatta.model.families import family_of
from gatta.model.recipe import head_config
from gatta.model.network import GattaNet
from gatta.training.train import trainable_parameters


def timed(fn, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="toy")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    family = family_of(args.backbone)
    size = args.image_size or family.image_size
    torch.manual_seed(0)
    # ResNets: the paper's batch norm, layer norm and d=8
    model = GattaNet(head_config(args.backbone, num_classes=10 if family.data_normalisation else 200,
                                 image_size=size, alpha_init=0.1))
    x = torch.rand(args.batch, 3, size, size)
    y = torch.randint(0, 10, (args.batch,))

    # Backbone alone, trainable (what training the toy backbone costs per step).
    model.backbone.eval()

    def backbone_forward():
        with torch.no_grad():
            model.forward_backbone(x)

    def backbone_train_step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model.forward_backbone(x), y).backward()

    results = [(name, args.batch / timed(fn, args.steps)) for name, fn in
               [("backbone forward (no grad)", backbone_forward),
                ("backbone forward+backward (weights)", backbone_train_step)]]
    params = trainable_parameters(model, "head")  # freezes the backbone from here on
    opt = torch.optim.Adam(params, lr=1e-3)
    model.train()

    def head_step(images: torch.Tensor, autocast: bool = False):
        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = F.cross_entropy(model(images).logits.float(), y)
            loss.backward()
            opt.step()
        return step

    def gatta_forward():
        model.eval()
        with torch.no_grad():
            model(x)
        model.train()

    rows = [("GAttANet forward (eval, no grad)", gatta_forward),
            ("head train step (fp32)", head_step(x)),
            ("head train step (bf16 autocast)", head_step(x, True))]
    if family.name == "toy":  # channels-last memory format for the convolutions and pooling
        xc = x.contiguous(memory_format=torch.channels_last)
        rows.append(("head train step (channels-last)", head_step(xc)))
        rows.append(("head train step (channels-last, bf16)", head_step(xc, True)))

    for name, fn in rows:
        if "channels-last" in name:
            model.to(memory_format=torch.channels_last)
        seconds = timed(fn, args.steps)
        results.append((name, args.batch / seconds))
    base = results[0][1]
    print(f"backbone {args.backbone}, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'variant':<40} {'images/s':>10} {'time vs backbone fwd':>22}")
    for name, ips in results:
        print(f"{name:<40} {ips:>10.0f} {base / ips:>21.2f}x")


if __name__ == "__main__":
    main()
