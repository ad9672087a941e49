"""Does running a batch in slices bring the toy's second pass nearer its floor?

    python scripts/bench_slices.py [--slices 64,16,8] [--rounds 12] [--json out.json]

At batch 64 the toy GAttANet graph's attached maps are 14.7 MB, far more than a core's L2, and
the attention's extra passes over them (docs/performance-analysis.md) read from memory. Run in
slices of a few images, each slice's maps might stay in cache. Here the shipped toy model's
baseline and GAttANet (CPU export) graphs run a batch of 64 whole and as consecutive
``session.run`` calls of each slice size, all rows interleaved in their steady state
(bench/interleaved.py timed_block), order flipped every other round. Printed per row: ms a batch
of 64, and its time over the whole-batch baseline's (median [min-max] of the per-round ratios).
With ``--resnet`` the same for a random-weight ResNet18 head at 224 px, batch 8.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gatta.bench.graphs import calibrated_model
from gatta.bench.interleaved import close_run, fmt_spread, machine_load, spread, steady_rounds
from gatta.export.onnx_graph import export_onnx
from gatta.export.signature import signature_for
from gatta.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class Sliced:
    """A session run on consecutive slices of the batch, behind ``run(None, feeds)``."""

    def __init__(self, session, size: int):
        self.session, self.size = session, size

    def run(self, _outputs, feeds: dict):
        image = feeds["image"]
        return [self.session.run(["logits"], {"image": image[i:i + self.size]})[0]
                for i in range(0, len(image), self.size)]


def rows_for(model, tmp: Path, stem: str, batch: int, slices: list[int]) -> dict:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # every performance option at its default, as served
    sessions = {}
    for kind, sig in (("baseline", signature_for(model, baseline=True)), ("gattanet", signature_for(model))):
        path = export_onnx(model, sig, tmp / f"{stem}-{kind}.onnx")
        sessions[kind] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rows = {}
    for kind in ("baseline", "gattanet"):
        for size in [batch] + [s for s in slices if s != batch]:
            rows[f"{kind} in slices of {size}" if size != batch else f"{kind} whole"] = Sliced(sessions[kind], size)
    return rows


def measure(rows: dict, size: int, batch: int, rounds: int) -> dict:
    feeds = {"image": np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)}
    times = steady_rounds(rows, feeds, rounds)
    base = times["baseline whole"]
    return {k: {"ms": spread([t * 1e3 for t in v]), "over_baseline": spread([t / b for t, b in zip(v, base)])}
            for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", default="64,16,8", help="slice sizes for the toy's batch of 64")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--ckpt", type=Path, default=ROOT / "models" / "cifar10-toy-d16.pt",
                        help="the batch-64 row's model (default: the shipped toy model)")
    parser.add_argument("--resnet", action="store_true", help="also ResNet18 224 px, batch 8, slices 4 and 2")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="slices-"))
    result = {"onnxruntime": ort.__version__, "load_start": machine_load(), "rows": {}}
    toy, _ = load_checkpoint(args.ckpt)
    cases = [(f"{args.ckpt.stem} b64", toy, 64, [int(s) for s in args.slices.split(",")], args.rounds)]
    if args.resnet:
        cases.append(("ResNet18 224 b8", calibrated_model("resnet18", 224), 8, [4, 2], max(2, args.rounds // 3)))
    print("| graph | row | ms a batch | over the whole-batch baseline |")
    print("|---|---|---|---|")
    for label, model, batch, slices, rounds in cases:
        stem = label.split()[0]
        row = measure(rows_for(model, tmp, stem, batch, slices), model.config.image_size, batch, rounds)
        result["rows"][label] = {"batch": batch, "rounds": rounds, "rows": row}
        for name, s in row.items():
            print(f"| {label} | {name} | {fmt_spread(s['ms'], '')} | {fmt_spread(s['over_baseline'])} |", flush=True)
    close_run(result, args.json)


if __name__ == "__main__":
    main()
