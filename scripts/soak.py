"""`make soak`: 20,000 requests at concurrency 32 from several client processes against the
bundled model on a real tritonserver; every response matched to its request id and checked
against in-process ONNX Runtime; server memory sampled before, during and after.

    python scripts/soak.py [--requests 20000] [--concurrency 32] [--processes 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

import numpy as np

from gatta import contract
from gatta.bench.soak import run_soak
from gatta.client.images import expand_paths, load_image
from gatta.export.verify import ort_session
from gatta.serving.default_model import BUNDLED_CHECKPOINT, default_repository
from gatta.serving.launcher import start_server

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=BUNDLED_CHECKPOINT)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--protocol", default="http", choices=["http", "grpc"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    repo = default_repository(args.ckpt, "python", echo=lambda m: print(m, file=sys.stderr))
    size = 32
    images = np.stack([load_image(p, size) for p in expand_paths([ROOT / "samples"])])
    lesion = np.array([1, 0, 1, 1, 1], np.float32)  # a lesion mask too, so masks are exercised
    expected = ort_session(repo / "gatta" / "1" / "model.onnx").run(
        [contract.PROBS], {contract.IMAGE: images, contract.LESION_MASK: np.tile(lesion, (len(images), 1))})[0]
    with start_server(repo, wait=180) as server:
        samples = [server.memory_rss()]
        stop = threading.Event()

        def sample():
            while not stop.wait(2.0):
                samples.append(server.memory_rss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        url = server.http_url if args.protocol == "http" else server.grpc_url
        report = run_soak(url, images, expected, lesion, args.requests, args.concurrency, args.processes, args.protocol)
        stop.set()
        sampler.join()
        samples.append(server.memory_rss())
        report["ready_after"] = server.ready()
    mib = [s / 2**20 for s in samples]
    report["server_rss_mib"] = {"before": mib[0], "after": mib[-1], "max": max(mib), "samples": [round(m, 1) for m in mib]}
    half = len(mib) // 2
    report["server_rss_mib"]["trend_second_half"] = mib[-1] - mib[half] if half else 0.0
    print(f"{report['ok']}/{report['requests']} ok, {report['failed']} failed, {report['mismatched']} mismatched, "
          f"{report['wrong_id']} wrong ids, {report['requests_per_s']:.0f} req/s over {report['seconds']:.0f} s, "
          f"concurrency {report['concurrency']} from {report['processes']} processes; server RSS "
          f"{mib[0]:.0f} -> {mib[-1]:.0f} MiB (max {max(mib):.0f})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] == report["requests"] else 1)


if __name__ == "__main__":
    main()
