"""Is the second pass's cost ONNX Runtime's? The same exported graphs on OpenVINO, interleaved.

    python scripts/bench_runtimes.py [--openvino 2026.4.1] [--rounds 10] [--resnet-rounds 4]
                                     [--json out.json]

ONNX Runtime's CPU provider runs the toy GAttANet graph at about 2.3x its baseline against an
analytic floor of 1.92x (docs/performance-analysis.md): the attention's per-map passes over
memory are not fused into the convolutions. OpenVINO's CPU plugin fuses elementwise work into
convolution epilogues (oneDNN post-ops), so it is the obvious other runtime to ask. OpenVINO is
not a dependency of the project: it is pip-installed (no dependencies but its telemetry stub)
into .bench/openvino/<version> and imported from there, in this process, beside the
environment's onnxruntime.

Rows: the shipped toy model at serving batch sizes 16 and 64, and a ResNet18 head (random
weights, calibrated batch norm, as in `make bench`) at 224 px, batch 8. Graphs: each runtime's
baseline, and the GAttANet graph as exported for it: ONNX Runtime gets the CPU export (the
blocked-layout modulation, export/cpu_layout.py), OpenVINO the broadcast one (``layout="gpu"``;
its plugin picks its own layouts). OpenVINO is compiled for the row's fixed batch with the
LATENCY hint on 2 threads, in FP32 (``INFERENCE_PRECISION_HINT=f32``) and, where the CPU has
bf16 instructions, also in bf16 (OpenVINO's default precision on such a CPU), which is reported
but is not a like-for-like row. Every graph runs in its steady state (bench/interleaved.py timed_block),
all graphs of a row once per round, order flipped every other round. Printed per row and
runtime: baseline ms, GAttANet ms, GAttANet / baseline (median [min-max] over rounds), the
GAttANet graph's time over ONNX Runtime's, and its largest logit difference from ONNX Runtime;
then the node kinds of OpenVINO's FP32 execution graphs (what runs after its fusions).

OpenVINO's ONNX reader turns the graph's optional inputs (``lesion_mask``, ``query_bias``,
declared with defaults) into constants, so the OpenVINO rows serve the common request only.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gatta.bench.graphs import analytic_floor, calibrated_model
from gatta.bench.interleaved import close_run, fmt_spread as fmt, machine_load, spread, steady_rounds
from gatta.export.onnx_graph import export_onnx
from gatta.export.signature import signature_for
from gatta.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SHOWN_NODES = ("Convolution", "Subgraph", "Eltwise", "Reorder", "MatMul", "Reduce", "Pooling")


def import_openvino(version: str):
    """The ``openvino`` module of that release, installed once into .bench/openvino/<version>."""
    target = ROOT / ".bench" / "openvino" / version
    if not (target / "openvino").is_dir():
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              f"openvino=={version}", "openvino-telemetry"])
        if pip.returncode != 0:
            raise SystemExit(f"error: pip could not install openvino=={version} into {target} (exit "
                             f"{pip.returncode}; is PyPI reachable, and is {version} a release?)")
    sys.path.insert(0, str(target))
    import openvino

    return openvino


class OpenVINOSession:
    """An OpenVINO compiled model behind ONNX Runtime's ``run(None, feeds)``, so timed_block
    times both runtimes the same way."""

    def __init__(self, ov, path: Path, batch: int, size: int, precision: str):
        core = ov.Core()
        model = core.read_model(str(path))
        model.reshape({model.input("image"): ov.PartialShape([batch, 3, size, size])})
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": precision}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.logits = self.compiled.output("logits")
        # what the plugin runs after its own fusions: node kinds of the execution graph
        self.runtime_ops = collections.Counter(op.get_rt_info()["layerType"].astype(str)
                                               for op in self.compiled.get_runtime_model().get_ordered_ops())

    def run(self, _outputs, feeds: dict):
        return [self.request.infer({"image": feeds["image"]})[self.logits]]


def ort_session(path: Path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # every performance option at its default, as served
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def has_bf16(ov) -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--openvino", default="2026.4.1", help="OpenVINO release to install and measure")
    parser.add_argument("--rounds", type=int, default=10, help="rounds for the toy rows")
    parser.add_argument("--resnet-rounds", type=int, default=4, help="rounds for the ResNet18 row")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    ov = import_openvino(args.openvino)
    tmp = Path(tempfile.mkdtemp(prefix="runtimes-"))
    toy, _ = load_checkpoint(ROOT / "models" / "cifar10-toy-d16.pt")
    resnet = calibrated_model("resnet18", 224)
    precisions = {"f32": "f32", **({"bf16": "bf16"} if has_bf16(ov) else {})}
    result = {"onnxruntime": ort.__version__, "openvino": ov.__version__, "load_start": machine_load(), "rows": {}}
    print(f"onnxruntime {ort.__version__}, openvino {ov.__version__}; OpenVINO precisions: {', '.join(precisions)}")
    print("| row | runtime | baseline ms | GAttANet ms | GAttANet / baseline | floor | GAttANet / ONNX Runtime's "
          "| max logit diff from ONNX Runtime |")
    print("|---|---|---|---|---|---|---|---|")
    cases = [("toy b16", toy, "toy", 16, args.rounds), ("toy b64", toy, "toy", 64, args.rounds),
             ("ResNet18 224 b8", resnet, "resnet18", 8, args.resnet_rounds)]
    executed = []
    for label, model, stem, batch, rounds in cases:
        size = model.config.image_size
        paths = {kind: tmp / f"{stem}-{kind}.onnx" for kind in ("baseline", "cpu", "gpu")}
        if not paths["baseline"].exists():
            export_onnx(model, signature_for(model, baseline=True), paths["baseline"])
            for layout in ("cpu", "gpu"):
                export_onnx(model, signature_for(model), paths[layout], layout=layout)
        sessions = {("onnxruntime", "baseline"): ort_session(paths["baseline"]),
                    ("onnxruntime", "gattanet"): ort_session(paths["cpu"])}
        for name, precision in precisions.items():
            for kind, path in (("baseline", paths["baseline"]), ("gattanet", paths["gpu"])):
                sessions[(f"openvino {name}", kind)] = OpenVINOSession(ov, path, batch, size, precision)
        feeds = {"image": np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)}
        logits = {key: np.asarray(s.run(None, feeds)[0]) for key, s in sessions.items()}
        times = steady_rounds(sessions, feeds, rounds)
        floor = analytic_floor(model)[0]
        rows = {}
        for runtime in dict.fromkeys(rt for rt, _ in sessions):
            base, gatta = times[(runtime, "baseline")], times[(runtime, "gattanet")]
            ref = logits[("onnxruntime", "gattanet")]
            rows[runtime] = {
                "baseline_ms": spread([t * 1e3 for t in base]), "gattanet_ms": spread([t * 1e3 for t in gatta]),
                "ratio": spread([g / b for g, b in zip(gatta, base)]),
                "over_onnxruntime": spread([g / o for g, o in zip(gatta, times[("onnxruntime", "gattanet")])]),
                "max_logit_diff": float(np.abs(logits[(runtime, "gattanet")] - ref).max()),
                "logit_scale": float(np.abs(ref).max())}
            s = rows[runtime]
            print(f"| {label} | {runtime} | {s['baseline_ms']['median']:.2f} | {s['gattanet_ms']['median']:.2f} | "
                  f"{fmt(s['ratio'])} | {floor:.2f}x | {fmt(s['over_onnxruntime'])} | "
                  f"{s['max_logit_diff']:.1e} (logits up to {s['logit_scale']:.1f}) |", flush=True)
        graphs = {kind: dict(sessions[("openvino f32", kind)].runtime_ops) for kind in ("baseline", "gattanet")}
        result["rows"][label] = {"batch": batch, "rounds": rounds, "floor": floor, "runtimes": rows,
                                 "openvino_f32_execution_graph": graphs}
        executed.append((label, graphs))
    print("\nOpenVINO FP32 execution graphs (nodes after the plugin's fusions; Subgraph = a JIT-compiled "
          "elementwise group):")
    for label, graphs in executed:
        for kind, ops in graphs.items():
            kinds = ", ".join(f"{k} {ops.get(k, 0)}" for k in SHOWN_NODES)
            print(f"  {label} {kind}: {sum(ops.values())} nodes ({kinds})")
    close_run(result, args.json)


if __name__ == "__main__":
    main()
