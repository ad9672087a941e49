"""ONNX Runtime CPU: baseline vs GAttANet, graph optimisation BASIC vs ALL, PyTorch eager vs
ONNX Runtime, against the analytic floor (two passes minus the shared prefix).

    python scripts/bench_export.py [--ckpt models/cifar10-toy-d16.pt | --backbone resnet18]
                                   [--threads 2] [--seconds 3] [--profile] [--json out.json]

Runs are interleaved (A, B, A, B ...) so machine noise hits both sides alike; the table
reports medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gatta.export.onnx_graph import export_onnx
from gatta.export.signature import signature_for
from gatta.export.verify import ort_session
from gatta.training.checkpoint import load_checkpoint
from gatta.training.config import GattaConfig
from gatta.training.model import GattaNet


def stage_macs(model: GattaNet) -> list[int]:
    """Multiply-accumulates of each backbone stage for one image (conv and linear layers)."""
    macs: list[int] = []
    counts = [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            counts[0] += output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
        elif isinstance(module, nn.Linear):
            counts[0] += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    h = torch.zeros(1, 3, model.config.image_size, model.config.image_size)
    with torch.no_grad():
        for stage in model.backbone.stages:
            counts[0] = 0
            h = stage(h)
            macs.append(counts[0])
    for handle in handles:
        handle.remove()
    return macs


def measure(fns: dict, seconds: float) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved round-robin."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    deadline = time.perf_counter() + seconds * len(fns)
    while time.perf_counter() < deadline or min(len(v) for v in times.values()) < 5:
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--backbone", default="toy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="per variant and batch size")
    parser.add_argument("--profile", action="store_true", help="print ONNX Runtime's top operators at batch 64")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.ckpt:
        model, _ = load_checkpoint(args.ckpt)
    else:
        size = 32 if args.backbone == "toy" else 224
        torch.manual_seed(0)
        model = GattaNet(GattaConfig(backbone=args.backbone, num_classes=10 if size == 32 else 1000,
                                     image_size=size, alpha_init=0.1)).eval()
    macs = stage_macs(model)
    floor = (2 * sum(macs) - macs[0]) / sum(macs)
    tmp = Path(tempfile.mkdtemp())
    paths = {}
    for kind, baseline in (("baseline", True), ("gattanet", False)):
        paths[kind] = export_onnx(model, signature_for(model, baseline=baseline), tmp / f"{kind}.onnx")
    sessions = {f"{kind} ORT {level}": ort_session(paths[kind], level, args.threads, spinning=False)
                for kind in ("baseline", "gattanet") for level in ("basic", "all")}
    rows = {}
    size = model.config.image_size
    for batch in (1, 64):
        x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
        xt = torch.from_numpy(x)
        fns = {name: (lambda s=s: s.run(None, {"image": x})) for name, s in sessions.items()}

        def eager_base():
            with torch.no_grad():
                model.forward_backbone(xt)

        def eager_gatta():
            with torch.no_grad():
                model(xt, return_maps=True)

        fns["baseline PyTorch eager"] = eager_base
        fns["gattanet PyTorch eager"] = eager_gatta
        for name, sec in measure(fns, args.seconds).items():
            rows.setdefault(name, {})[batch] = sec

    print(f"backbone {model.config.backbone}, {args.threads} threads, onnxruntime CPU")
    print(f"analytic floor: two passes minus the shared prefix = {floor:.2f}x the baseline "
          f"(prefix = {macs[0] / sum(macs):.1%} of {sum(macs) / 1e6:.1f}M MACs/image)\n")
    print(f"{'variant':<28} {'batch 1 latency':>16} {'batch 64 img/s':>15}")
    for name, r in rows.items():
        print(f"{name:<28} {r[1] * 1e3:>13.3f} ms {64 / r[64]:>15.0f}")
    report = {"floor": floor, "prefix_share": macs[0] / sum(macs), "rows": rows, "ratios": {}}
    print("\nratios (time, GAttANet / baseline):")
    for engine in ("ORT basic", "ORT all", "PyTorch eager"):
        for batch in (1, 64):
            ratio = rows[f"gattanet {engine}"][batch] / rows[f"baseline {engine}"][batch]
            report["ratios"][f"{engine} batch {batch}"] = ratio
            extra = f"  ({ratio / floor:.2f}x the floor)" if batch == 64 else ""
            print(f"  {engine:<14} batch {batch:<3} {ratio:.2f}x{extra}")
    print("\nPyTorch eager / ORT all (time, same model):")
    for kind in ("baseline", "gattanet"):
        for batch in (1, 64):
            ratio = rows[f"{kind} PyTorch eager"][batch] / rows[f"{kind} ORT all"][batch]
            report["ratios"][f"eager/ORT {kind} batch {batch}"] = ratio
            print(f"  {kind:<9} batch {batch:<3} {ratio:.2f}x")
    if args.profile:
        report["profile"] = profile_ops(paths["gattanet"], size, args.threads)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def profile_ops(path: Path, size: int, threads: int) -> dict[str, float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.intra_op_num_threads = threads
    opts.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((64, 3, size, size), dtype=np.float32)
    for _ in range(20):
        session.run(None, {"image": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + e["dur"]
    total = sum(by_op.values())
    print("\nONNX Runtime profile, GAttANet batch 64 (share of kernel time):")
    shares = {op: d / total for op, d in sorted(by_op.items(), key=lambda kv: -kv[1])}
    for op, share in list(shares.items())[:10]:
        print(f"  {op:<20} {share:6.1%}")
    return shares


if __name__ == "__main__":
    main()
