"""Where the second pass's time goes: ONNX Runtime's profiler on the baseline and GAttANet graphs.

    python scripts/profile_graphs.py [--runs 40] [--json docs/profile.json]

Rows: the shipped toy model at its serving batch sizes (16, 64) and a ResNet18 head (the paper's
ResNet head recipe, random weights) at 224 px, batch 8. For each row: operator counts of the
exported and of the optimised graph (what ONNX Runtime actually runs, NCHWc layout included),
and kernel time per operator kind (averaged over all runs, the 5 warm-up runs included). "Beyond floor"
charges each kind its baseline time times the analytic floor (what must run twice) and calls
the rest extra; kinds the baseline does not run are all extra.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from gatta.bench.graphs import analytic_floor, calibrated_model
from gatta.export.onnx_graph import export_onnx
from gatta.export.signature import signature_for
from gatta.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def profile(path: Path, size: int, batch: int, runs: int) -> dict:
    """Kernel microseconds per run by operator kind, the optimised graph's operator counts and
    the median wall time of a run."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.with_suffix(""))
    opts.optimized_model_filepath = str(path.with_suffix(".optimised.onnx"))
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {"image": np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)}
    for _ in range(runs + 5):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    walls = [e["dur"] for e in events if e.get("name") == "model_run"][5:]
    kernel: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            kernel[e["args"]["op_name"]] += e["dur"]
    n = len([e for e in events if e.get("name") == "model_run"])
    optimised = onnx.load(str(path.with_suffix(".optimised.onnx")))
    return {"wall_us": statistics.median(walls), "kernel_us": {k: v / n for k, v in kernel.items()},
            "ops": dict(collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)),
            "optimised_ops": dict(collections.Counter(n.op_type for n in optimised.graph.node))}


def rows() -> list[tuple[str, object, int]]:
    toy, _ = load_checkpoint(ROOT / "models" / "cifar10-toy-d16.pt")
    resnet = calibrated_model("resnet18", 224)
    return [("toy b16", toy, 16), ("toy b64", toy, 64), ("resnet18-224 b8", resnet, 8)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="profile-"))
    result = {"onnxruntime": ort.__version__, "rows": {}}
    for label, model, batch in rows():
        floor = analytic_floor(model)[0]
        stem = label.split()[0]
        graphs = {k: export_onnx(model, signature_for(model, baseline=k == "baseline"), tmp / f"{stem}-{k}.onnx")
                  for k in ("baseline", "gattanet")}
        prof = {k: profile(p, model.config.image_size, batch, args.runs) for k, p in graphs.items()}
        base, gatta = prof["baseline"]["kernel_us"], prof["gattanet"]["kernel_us"]
        kinds = sorted(set(base) | set(gatta), key=lambda k: -(gatta.get(k, 0) - floor * base.get(k, 0)))
        table = {k: {"baseline_us": base.get(k, 0.0), "gattanet_us": gatta.get(k, 0.0),
                     "beyond_floor_us": gatta.get(k, 0.0) - floor * base.get(k, 0.0)} for k in kinds}
        result["rows"][label] = {"floor": floor, "batch": batch, "profiles": prof, "by_kind": table}

        wall_b, wall_g = prof["baseline"]["wall_us"], prof["gattanet"]["wall_us"]
        print(f"\n## {label}: GAttANet / baseline {wall_g / wall_b:.2f}x (profiled wall time {wall_g / 1e3:.2f} / "
              f"{wall_b / 1e3:.2f} ms), floor {floor:.2f}x")
        for k in ("baseline", "gattanet"):
            print(f"{k}: {sum(prof[k]['ops'].values())} operators exported, "
                  f"{sum(prof[k]['optimised_ops'].values())} after optimisation: "
                  + ", ".join(f"{op} {c}" for op, c in sorted(prof[k]["optimised_ops"].items(), key=lambda kv: -kv[1])))
        print("| operator kind | baseline us | GAttANet us | beyond floor us |\n|---|---|---|---|")
        for k, row in table.items():
            print(f"| {k} | {row['baseline_us']:.0f} | {row['gattanet_us']:.0f} | {row['beyond_floor_us']:+.0f} |")
        print(f"| all kernels | {sum(base.values()):.0f} | {sum(gatta.values()):.0f} | "
              f"{sum(gatta.values()) - floor * sum(base.values()):+.0f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
