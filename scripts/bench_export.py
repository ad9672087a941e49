"""ONNX Runtime CPU: baseline vs GAttANet at graph optimisation levels BASIC/EXTENDED/ALL,
PyTorch eager vs ONNX Runtime, against the analytic floor (two passes minus the shared prefix).

    python scripts/bench_export.py [--ckpt models/cifar10-toy-d16.pt | --backbone resnet18]
                                   [--threads 2] [--seconds 2] [--profile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gatta.bench.graphs import in_process_table, profile_ops
from gatta.model.families import family_of
from gatta.model.checkpoint import load_checkpoint
from gatta.model.network import GattaNet
from gatta.model.recipe import head_config


def print_table(table: dict) -> None:
    rows, floor = table["rows"], table["floor"]
    print(f"analytic floor: two passes minus the shared prefix = {floor:.2f}x the baseline "
          f"(prefix = {table['prefix_share']:.1%} of the backbone's MACs)\n")
    print(f"{'variant':<28} {'batch 1 latency':>16} {'batch 64 img/s':>15}")
    for name, r in rows.items():
        print(f"{name:<28} {r[1] * 1e3:>13.3f} ms {64 / r[64]:>15.0f}")
    print("\ntime ratio GAttANet / baseline:")
    engines = sorted({n.split(" ", 1)[1] for n in rows})
    for engine in engines:
        r1 = rows[f"gattanet {engine}"][1] / rows[f"baseline {engine}"][1]
        r64 = rows[f"gattanet {engine}"][64] / rows[f"baseline {engine}"][64]
        print(f"  {engine:<14} batch 1 {r1:.2f}x   batch 64 {r64:.2f}x ({r64 / floor:.2f}x the floor)")
    print("\ntime ratio PyTorch eager / ORT all:")
    for kind in ("baseline", "gattanet"):
        print(f"  {kind:<9} batch 1 {rows[f'{kind} PyTorch eager'][1] / rows[f'{kind} ORT all'][1]:.2f}x   "
              f"batch 64 {rows[f'{kind} PyTorch eager'][64] / rows[f'{kind} ORT all'][64]:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--backbone", default="toy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="per variant and batch size")
    parser.add_argument("--profile", action="store_true", help="ONNX Runtime's top operators at batch 64")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.ckpt:
        model, _ = load_checkpoint(args.ckpt)
    else:
        size = family_of(args.backbone).image_size
        torch.manual_seed(0)
        # the head recipe's config (ResNets: the paper's batch norm, layer norm and d=8)
        model = GattaNet(head_config(args.backbone, num_classes=10 if size == 32 else 1000, image_size=size,
                                     alpha_init=0.1)).eval()
    table = in_process_table(model, args.threads, args.seconds)
    print(f"backbone {model.config.backbone}, {args.threads} threads, onnxruntime CPU")
    print_table(table)
    if args.profile:
        for kind in ("baseline", "gattanet"):
            table[f"profile_{kind}"] = profile_ops(Path(table["paths"][kind]), model.config.image_size, args.threads)
            print(f"\nONNX Runtime ALL, {kind} batch 64, share of kernel time: " +
                  ", ".join(f"{op} {share:.1%}" for op, share in list(table[f"profile_{kind}"].items())[:8]))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
