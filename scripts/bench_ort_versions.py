"""Which ONNX Runtime release to pin: the exported graphs timed on several releases, interleaved.

    python scripts/bench_ort_versions.py [--versions 1.32.0 1.24.4 1.20.1] [--rounds 6]
                                         [--json docs/ort-versions.json]

Each release is pip-installed (no dependencies) into .bench/ort/<version>; the environment's own
onnxruntime is measured in place. Every round runs one child process per release, the order
flipped every other round; inside a child each graph runs in its steady state (a moment of quiet, two untimed runs, the
median of the timed ones; bench/interleaved.py timed_block). Rows:
the shipped toy model at serving batch sizes 16 and 64, and a ResNet18 head (the paper's ResNet
head recipe, random weights: the graph's cost is the same) at 224 px. Printed: per release and
pair, baseline ms and GAttANet / baseline as median [min-max] over rounds, against the analytic
floor (what must run twice).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import onnxruntime

from gatta.bench.graphs import analytic_floor, calibrated_model
from gatta.bench.interleaved import is_busy, machine_load, spread
from gatta.bench.ort_versions import install, run_child
from gatta.export.onnx_graph import export_onnx
from gatta.export.signature import signature_for
from gatta.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def graph_pairs(out: Path, ckpt: Path, resnet_batch: int) -> tuple[dict, dict]:
    """Exported baseline/GAttANet graphs per row, and each row's analytic floor."""
    toy, _ = load_checkpoint(ckpt)
    resnet = calibrated_model("resnet18", 224)
    pairs, floors = {}, {}
    for name, model in (("toy", toy), ("resnet18-224", resnet)):
        paths = {k: str(export_onnx(model, signature_for(model, baseline=k == "baseline"), out / f"{name}-{k}.onnx"))
                 for k in ("baseline", "gattanet")}
        batches = (16, 64) if name == "toy" else (resnet_batch,)
        for batch in batches:
            label = f"{name} b{batch}"
            pairs[label] = {**paths, "image_size": model.config.image_size, "batch": batch}
            floors[label] = analytic_floor(model)[0]
    return pairs, floors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="+", default=["1.32.0", "1.28.0", "1.24.4", "1.20.1"],
                        help="releases to compare; the environment's own is measured in place")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--reps", type=int, default=7, help="timed runs of each graph inside a child (median)")
    parser.add_argument("--resnet-batch", type=int, default=8)
    parser.add_argument("--ckpt", type=Path, default=ROOT / "models" / "cifar10-toy-d16.pt")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    sites = {v: None if v == onnxruntime.__version__ else install(v, ROOT / ".bench" / "ort") for v in args.versions}
    tmp = Path(tempfile.mkdtemp(prefix="ort-versions-"))
    pairs, floors = graph_pairs(tmp, args.ckpt, args.resnet_batch)
    spec = {"pairs": pairs, "reps": args.reps}
    load_start = machine_load()
    runs: dict[str, list[dict]] = {v: [] for v in args.versions}
    for r in range(args.rounds):
        for v in args.versions if r % 2 == 0 else reversed(args.versions):
            runs[v].append(run_child({**spec, "flip": r % 2 == 1}, sites[v]))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    load_end = machine_load()

    result = {"rounds": args.rounds, "reps": args.reps, "load_start": load_start, "load_end": load_end,
              "busy": is_busy(load_start) or is_busy(load_end), "floors": floors, "versions": {}}
    for v, children in runs.items():
        rows = {}
        for label in pairs:
            ratios = [c["pairs"][label]["ratio"] for c in children]
            rows[label] = {"baseline_ms": spread([c["pairs"][label]["baseline_ms"] for c in children]),
                           "gattanet_ms": spread([c["pairs"][label]["gattanet_ms"] for c in children]),
                           "ratio": spread(ratios), "vs_floor": statistics.median(ratios) / floors[label]}
        result["versions"][v] = rows

    print(f"\nmachine load before {load_start['loadavg']} (others {load_start['others_cpu_percent']}% CPU), "
          f"after {load_end['loadavg']} (others {load_end['others_cpu_percent']}%)"
          f"{'  BUSY: figures not comparable' if result['busy'] else ''}")
    print(f"{args.rounds} rounds x {args.reps} timed runs per graph; median [min-max] over rounds\n")
    print("| onnxruntime | row | baseline ms | GAttANet / baseline | floor | median / floor |")
    print("|---|---|---|---|---|---|")
    for v, rows in result["versions"].items():
        for label, row in rows.items():
            b, q = row["baseline_ms"], row["ratio"]
            print(f"| {v} | {label} | {b['median']:.2f} [{b['min']:.2f}-{b['max']:.2f}] | "
                  f"{q['median']:.2f} [{q['min']:.2f}-{q['max']:.2f}]x | {floors[label]:.2f}x | {row['vs_floor']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
