"""What the served model's guards cost next to the model, at batch 1 and 64: the input checks
(NaN/Inf and the accepted ranges, on image, lesion_mask and query_bias) and the output check
(no NaN or Inf in any output), against one ONNX Runtime run of the same batch, in-process.

The guards are gatta/guards.py, the functions the exporter pastes into the classifier's
model.py, so these are the served model's own. Each figure is the median [min-max] over rounds of the per-round median.

    python scripts/bench_guards.py [--model models/cifar10-toy-d16.pt] [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gatta import contract
from gatta.contract import ModelMetadata
from gatta.export.repository import read_config
from gatta.guards import non_finite_rows, range_refusal
from gatta.serving.default_model import default_repository

def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def spread(values) -> str:
    return f"{np.median(values):.4g} [{min(values):.4g}-{max(values):.4g}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/cifar10-toy-d16.pt"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads.")
    args = parser.parse_args()

    repo = default_repository(args.model, "python", device="cpu")
    config = read_config(repo / "gatta" / "config.pbtxt")
    meta = ModelMetadata.from_json(config.parameters[contract.PARAM_METADATA].string_value)
    bounds = json.loads(config.parameters[contract.PARAM_BOUNDS].string_value)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(str(repo / "gatta" / "1" / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(0)
    print(f"model {args.model} ({meta.image_size}x{meta.image_size}, {len(meta.layers)} attached layers, "
          f"{len(names)} outputs); ONNX Runtime {ort.__version__}, {args.threads} thread(s); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    for batch, repeats in ((1, 200), (64, 20)):
        feeds = {contract.IMAGE: rng.random((batch, 3, meta.image_size, meta.image_size), dtype=np.float32),
                 contract.LESION_MASK: np.ones((batch, len(meta.layers)), np.float32),
                 contract.QUERY_BIAS: np.zeros((batch, meta.d), np.float32)}
        outputs = dict(zip(names, session.run(names, feeds)))

        def checks():
            for name, arr in feeds.items():
                assert range_refusal(name, arr, bounds) is None
            assert non_finite_rows(outputs, batch) is None

        def before():  # what the model checked until now: NaN/Inf inputs only
            for arr in feeds.values():
                assert np.isfinite(arr).all()

        model_s, checks_s, before_s = [], [], []
        for _ in range(args.rounds):
            model_s.append(timed(lambda: session.run(names, feeds), repeats) * 1e3)
            checks_s.append(timed(checks, repeats) * 1e6)
            before_s.append(timed(before, repeats) * 1e6)
        share = [100 * c / (m * 1e3) for c, m in zip(checks_s, model_s)]
        print(f"batch {batch:2d}: model {spread(model_s)} ms; guards {spread(checks_s)} us "
              f"(NaN/Inf-only check before: {spread(before_s)} us); guards / model {spread(share)} %")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
