"""Several ONNX Runtime releases on the same exported graphs, interleaved.

One Python process can import only one ``onnxruntime``, so each release is installed into a
folder of its own (``pip install --no-deps --target``) and every measurement runs in a child
process whose ``PYTHONPATH`` puts that folder first. A round runs one child per release (order
flipped every other round); inside a child, the baseline and GAttANet graphs of each pair
run one after the other (each in its steady state: ``interleaved.timed_block``), so each child's
GAttANet / baseline ratio is taken within one moment of the machine.

    parent:  python scripts/bench_ort_versions.py ...
    child:   python -m gatta.bench.ort_versions SPEC.json   (prints one JSON line)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def install(version: str, root: Path) -> Path:
    """``root/<version>`` holding that onnxruntime release alone (its dependencies come from
    the running environment: numpy, protobuf, flatbuffers)."""
    target = root / version
    if not (target / "onnxruntime").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        f"onnxruntime=={version}"], check=True)
    return target


def run_child(spec: dict, site: Path | None, timeout: float = 900) -> dict:
    """One measurement in a fresh process on the onnxruntime found first on ``site`` (None:
    the environment's own)."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-m", "gatta.bench.ort_versions", json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement child failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(spec: dict) -> dict:
    """Time every pair's graphs, alternating, and return medians (ms) and ratios."""
    import numpy as np
    import onnxruntime as ort

    from gatta.bench.interleaved import timed_block

    out = {"onnxruntime": ort.__version__, "pairs": {}}
    for label, pair in spec["pairs"].items():
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # every performance option at its default, as served
        sessions = {k: ort.InferenceSession(pair[k], opts, providers=["CPUExecutionProvider"])
                    for k in ("baseline", "gattanet")}
        size, batch = pair["image_size"], pair["batch"]
        feeds = {"image": np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)}
        order = ("baseline", "gattanet") if spec.get("flip") else ("gattanet", "baseline")
        times = {k: timed_block(sessions[k], feeds, spec["reps"]) for k in order}
        base, gatta = times["baseline"], times["gattanet"]
        out["pairs"][label] = {"baseline_ms": base * 1e3, "gattanet_ms": gatta * 1e3, "ratio": gatta / base}
    return out


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
