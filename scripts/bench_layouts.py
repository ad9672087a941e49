"""The second pass with and without the blocked-layout modulation (export/cpu_layout.py).

    python scripts/bench_layouts.py [--rounds 20] [--family-rounds 5] [--json out.json]

For the shipped toy model (batch 16 and 64) and one random-weight member of each backbone
family at 224 px (batch 8, calibrated batch norm as in `make bench`): the baseline graph, the
GAttANet graph as exported for a GPU (``layout="gpu"``: each modulation a channel broadcast,
which is also what the CPU export wrote before) and as exported for the CPU (``layout="cpu"``),
and the measured floor (the backbone's two passes with no attention, bench/graphs.py
``export_backbone_passes``), timed interleaved in their steady state (bench/interleaved.py
``timed_block``), each round flipping the order. Prints, per row, each graph over the baseline,
cpu over gpu and cpu over the measured floor, as median [min-max] over the rounds, with the
operator counts ONNX Runtime runs after optimisation.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from gatta.bench.graphs import (FAMILY_ROWS, analytic_floor, backbone_passes_session, calibrated_model,
                                export_backbone_passes)
from gatta.bench.interleaved import close_run, fmt_spread as fmt, machine_load, spread, steady_rounds
from gatta.export.onnx_graph import export_onnx
from gatta.export.signature import signature_for
from gatta.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ("baseline", "gpu", "cpu", "passes")
RUN_OPS = ("ReorderInput", "ReorderOutput")


def sessions_for(model, tmp: Path, stem: str) -> tuple[dict, dict]:
    """ONNX Runtime sessions (default options; the passes graph without the optimiser that would
    merge its passes) of the four graphs, and their optimised operator counts."""
    paths = {"baseline": export_onnx(model, signature_for(model, baseline=True), tmp / f"{stem}-baseline.onnx")}
    for layout in ("gpu", "cpu"):
        paths[layout] = export_onnx(model, signature_for(model), tmp / f"{stem}-{layout}.onnx", layout=layout)
    paths["passes"] = export_backbone_passes(model, tmp / f"{stem}-passes.onnx")
    sessions, ops = {}, {}
    for kind, path in paths.items():
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.optimized_model_filepath = str(path.with_suffix(".optimised.onnx"))
        sessions[kind] = (backbone_passes_session(path, opts) if kind == "passes" else
                          ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))
        optimised = collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
        ops[kind] = {"total": sum(optimised.values()), **{k: optimised[k] for k in RUN_OPS}}
    return sessions, ops


def time_row(sessions: dict, size: int, batch: int, rounds: int) -> dict[str, list[float]]:
    feeds = {"image": np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)}
    return steady_rounds(sessions, feeds, rounds)


def summarise(times: dict[str, list[float]], floor: float, ops: dict) -> dict:
    base = times["baseline"]
    row = {"floor": floor, "baseline_ms": spread([t * 1e3 for t in base]), "ops": ops}
    for layout in ("gpu", "cpu"):
        row[layout] = spread([g / b for g, b in zip(times[layout], base)])
    row["cpu_over_gpu"] = spread([c / g for c, g in zip(times["cpu"], times["gpu"])])
    row["measured_floor"] = spread([p / b for p, b in zip(times["passes"], base)])
    row["cpu_over_measured_floor"] = spread([c / p for c, p in zip(times["cpu"], times["passes"])])
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="rounds for the toy rows")
    parser.add_argument("--family-rounds", type=int, default=5, help="rounds for the 224 px family rows")
    parser.add_argument("--families", default=",".join(FAMILY_ROWS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="layouts-"))
    result = {"onnxruntime": ort.__version__, "load_start": machine_load(), "rows": {}}
    toy, _ = load_checkpoint(ROOT / "models" / "cifar10-toy-d16.pt")
    cases = [("toy b16", toy, 16, args.rounds), ("toy b64", toy, 64, args.rounds)]
    cases += [(f"{name} 224 b8", name, 8, args.family_rounds) for name in args.families.split(",") if name]
    built: dict[str, tuple] = {}
    print("| graph | baseline ms | broadcast (gpu) / baseline | blocked (cpu) / baseline | cpu / gpu | floor "
          "| two passes, no attention / baseline | cpu / two passes | operators run: baseline, gpu, cpu "
          "| Reorder In+Out: gpu, cpu |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, model, batch, rounds in cases:
        if isinstance(model, str):
            model = calibrated_model(model, 224)
        stem = label.split()[0]
        if stem not in built:
            built[stem] = sessions_for(model, tmp, stem)
        sessions, ops = built[stem]
        times = time_row(sessions, model.config.image_size, batch, rounds)
        row = summarise(times, analytic_floor(model)[0], ops)
        result["rows"][label] = {"batch": batch, "rounds": rounds, **row}
        reorders = [ops[k]["ReorderInput"] + ops[k]["ReorderOutput"] for k in ("gpu", "cpu")]
        print(f"| {label} | {fmt(row['baseline_ms'], '')} | {fmt(row['gpu'])} | {fmt(row['cpu'])} | "
              f"{fmt(row['cpu_over_gpu'])} | {row['floor']:.2f}x | {fmt(row['measured_floor'])} | "
              f"{fmt(row['cpu_over_measured_floor'])} | "
              f"{ops['baseline']['total']}, {ops['gpu']['total']}, {ops['cpu']['total']} | "
              f"{reorders[0]}, {reorders[1]} |", flush=True)
    close_run(result, args.json)


if __name__ == "__main__":
    main()
