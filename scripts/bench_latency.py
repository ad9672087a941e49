"""Where a batch-1 request's time goes between the gRPC client and ONNX Runtime.

    python scripts/bench_latency.py [--ckpt models/cifar10-toy-d16.pt] [--delays 200 0]
                                    [--rounds 6] [--requests 300]

The checkpoint is exported once per dynamic-batcher delay (--max-queue-delay-us) into one
repository and served by one tritonserver (python flavour, export defaults otherwise). Every
round sends --requests sequential batch-1 gRPC requests to each model (order flipped every other
round) and reads Triton's own per-model statistics around them: queue (waiting in the dynamic
batcher), compute input/infer/output (the python backend: IPC to its stub, the stub's execute,
responses back) and the server's total per request. What the client measured beyond the
server's total is the gRPC round trip (client library, protobuf, loopback). In-process ONNX
Runtime with the stub's session options is the floor. Figures: medians over rounds of each
round's per-request mean (server stages) or p50 (client, in-process), with min-max.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil
import tritonclient.grpc as grpcclient

from gatta import contract
from gatta.bench.interleaved import is_busy, machine_load, spread
from gatta.export.exporter import ExportOptions, export_checkpoint
from gatta.serving.launcher import start_server

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("queue", "compute_input", "compute_infer", "compute_output", "success")


def stats(client, model: str) -> dict[str, tuple[int, int]]:
    s = client.get_inference_statistics(model, as_json=True)["model_stats"][0]["inference_stats"]
    return {k: (int(s[k].get("count", 0)), int(s[k].get("ns", 0))) for k in STAGES}


def in_process_p50(model_path: Path, size: int, n: int) -> float:
    """Batch-1 p50 (ms) with the python stub's options: all cores in one instance, one inter-op
    thread, the request's output (probs) only."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    feeds = {contract.IMAGE: np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)}
    for _ in range(20):
        session.run([contract.PROBS], feeds)
    lat = []
    for _ in range(n):
        start = time.perf_counter()
        session.run([contract.PROBS], feeds)
        lat.append((time.perf_counter() - start) * 1e3)
    return statistics.median(lat)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=ROOT / "models" / "cifar10-toy-d16.pt")
    parser.add_argument("--delays", type=int, nargs="+", default=[200, 0], help="max_queue_delay_microseconds")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    repo = Path(tempfile.mkdtemp(prefix="latency-"))
    models = {}
    for delay in args.delays:
        name = f"delay{delay}"
        export_checkpoint(args.ckpt, ExportOptions(out=repo, name=name, flavour="python", encoded=False,
                                                   queue_delay_us=delay))
        models[name] = delay
    from gatta.model.checkpoint import load_checkpoint

    size = load_checkpoint(args.ckpt)[0].config.image_size
    server = start_server(repo, wait=180)
    try:
        client = grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://"))
        image = grpcclient.InferInput(contract.IMAGE, [1, 3, size, size], "FP32")
        image.set_data_from_numpy(np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32))
        wanted = [grpcclient.InferRequestedOutput(contract.PROBS)]
        for name in models:
            for _ in range(20):
                client.infer(name, [image], outputs=wanted)
        load_start = machine_load(exclude={server.process.pid, *(p.pid for p in psutil.Process(server.process.pid).children(recursive=True))})
        rows: dict[str, dict[str, list[float]]] = {n: {k: [] for k in (*STAGES, "client")} for n in models}
        for r in range(args.rounds):
            for name in models if r % 2 == 0 else reversed(list(models)):
                before = stats(client, name)
                lat = []
                for _ in range(args.requests):
                    start = time.perf_counter()
                    client.infer(name, [image], outputs=wanted)
                    lat.append((time.perf_counter() - start) * 1e3)
                after = stats(client, name)
                for k in STAGES:
                    count = after["success"][0] - before["success"][0]
                    rows[name][k].append((after[k][1] - before[k][1]) / count / 1e6)
                rows[name]["client"].append(statistics.median(lat))
        load_end = machine_load(exclude={server.process.pid, *(p.pid for p in psutil.Process(server.process.pid).children(recursive=True))})
    finally:
        server.stop()
    floor = in_process_p50(repo / next(iter(models)) / "1" / "model.onnx", size, 2000)

    print(f"{args.ckpt.name}, batch 1, gRPC, {args.rounds} rounds x {args.requests} sequential requests; "
          f"onnxruntime {ort.__version__}; load before {load_start['loadavg']} (others "
          f"{load_start['others_cpu_percent']}%), after {load_end['loadavg']}"
          f"{' BUSY' if is_busy(load_start) or is_busy(load_end) else ''}\n")
    print(f"In-process ONNX Runtime p50: {floor:.3f} ms\n")
    print("| ms per request | " + " | ".join(f"max_queue_delay {d} us" for d in models.values()) + " |")
    print("|---|" + "---|" * len(models))
    labels = {"client": "client p50 (gRPC round trip)", "success": "server total (mean)", "queue": "queue",
              "compute_input": "compute input", "compute_infer": "compute infer (python stub)",
              "compute_output": "compute output"}
    for k in ("client", "success", "queue", "compute_input", "compute_infer", "compute_output"):
        cells = []
        for name in models:
            s = spread(rows[name][k])
            cells.append(f"{s['median']:.3f} [{s['min']:.3f}-{s['max']:.3f}]")
        print(f"| {labels[k]} | " + " | ".join(cells) + " |")
    print("| added by serving (client p50 - in-process p50) | " + " | ".join(
        f"+{statistics.median(rows[n]['client']) - floor:.3f}" for n in models) + " |")


if __name__ == "__main__":
    main()
