"""One timed load window against Triton, run as its own process so its CPU is measured apart:
``concurrency`` threads send the same prepared request back to back for ``seconds``.

The request objects are built once and reused (as perf_analyzer does): the window measures the
server and the wire, not numpy-to-protobuf conversion in the load generator.

    python -m gatta.bench.window --url 127.0.0.1:8001 --protocol grpc --batch 16 --concurrency 8 --seconds 4
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np

from gatta import contract


def prepared_request(module, batch: int, size: int, seed: int = 0):
    images = np.random.default_rng(seed).random((batch, 3, size, size), dtype=np.float32)
    tensor = module.InferInput(contract.IMAGE, list(images.shape), contract.DTYPE)
    tensor.set_data_from_numpy(images)
    return [tensor]


def run_window(url: str, protocol: str, model: str, batch: int, concurrency: int, seconds: float,
               outputs: list[str], size: int) -> dict:
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    clients = [module.InferenceServerClient(url, **({} if protocol == "grpc" else {"concurrency": 1}))
               for _ in range(concurrency)]
    inputs = prepared_request(module, batch, size)
    wanted = [module.InferRequestedOutput(n) for n in outputs]
    for c in clients:  # warm-up: connections open, model answers
        c.infer(model, inputs, outputs=wanted)
    latencies: list[list[float]] = [[] for _ in clients]
    failures = [0] * concurrency
    start_gate = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def loop(i: int):
        start_gate.wait()
        client, own = clients[i], latencies[i]
        while True:
            t = time.perf_counter()
            if t >= deadline[0]:
                return
            try:
                client.infer(model, inputs, outputs=wanted)
            except Exception:
                failures[i] += 1
                continue
            own.append(time.perf_counter() - t)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start_gate.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    done = [x for own in latencies for x in own]
    return {"items": len(done) * batch, "requests": len(done), "seconds": wall, "failures": sum(failures),
            "latencies_ms": [round(x * 1e3, 4) for x in done[:5000]]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    parser.add_argument("--model", default="gatta")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--output", action="append", default=None, help=f"repeatable [{contract.PROBS}]")
    args = parser.parse_args()
    print(json.dumps(run_window(args.url, args.protocol, args.model, args.batch, args.concurrency, args.seconds,
                                args.output or [contract.PROBS], args.size)))


if __name__ == "__main__":
    main()
