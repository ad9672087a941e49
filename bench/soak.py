"""Load from several client processes: every response matched to its request id and checked
against in-process ONNX Runtime results. Used by `make soak` and (short) by the tests.

Talks to Triton with tritonclient directly rather than through GattaClient: it sets and checks
a request id per request, which the classification API has no reason to expose."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np

from gatta import contract


def _worker(url: str, protocol: str, model: str, images: np.ndarray, expected: np.ndarray, lesion: np.ndarray,
            n_requests: int, threads: int, worker: int, queue) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    module = httpclient if protocol == "http" else grpcclient
    counts = {"ok": 0, "failed": 0, "mismatched": 0, "wrong_id": 0, "errors": []}
    lock = threading.Lock()
    todo = iter(range(n_requests))

    def loop():
        client = module.InferenceServerClient(url)
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            k = (worker * 7919 + i) % len(images)
            request_id = f"w{worker}-r{i}-img{k}"
            tensors = []  # query_bias left out: optional in the python flavour, default zeros
            for name, arr in ((contract.IMAGE, images[k : k + 1]), (contract.LESION_MASK, lesion[None])):
                t = module.InferInput(name, list(arr.shape), contract.DTYPE)
                t.set_data_from_numpy(arr)
                tensors.append(t)
            try:
                result = client.infer(model, tensors, request_id=request_id,
                                      outputs=[module.InferRequestedOutput(contract.PROBS)])
            except Exception as exc:  # counted, never fatal
                with lock:
                    counts["failed"] += 1
                    if len(counts["errors"]) < 5:
                        counts["errors"].append(str(exc)[:200])
                continue
            got_id = result.get_response(as_json=True)["id"] if protocol == "grpc" else result.get_response()["id"]
            probs = result.as_numpy(contract.PROBS)
            with lock:
                if got_id != request_id:
                    counts["wrong_id"] += 1
                elif probs is None or np.abs(probs[0] - expected[k]).max() > 1e-5:
                    counts["mismatched"] += 1
                else:
                    counts["ok"] += 1
        client.close()

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    queue.put(counts)


def run_soak(url: str, images: np.ndarray, expected: np.ndarray, lesion: np.ndarray, requests: int = 20000,
             concurrency: int = 32, processes: int = 4, protocol: str = "http", model: str = "gatta") -> dict:
    """``expected``: in-process ONNX Runtime probs for each image with ``lesion`` as mask."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    per_proc = [requests // processes + (1 if p < requests % processes else 0) for p in range(processes)]
    threads = max(1, concurrency // processes)
    start = time.perf_counter()
    procs = [ctx.Process(target=_worker, args=(url, protocol, model, images, expected, lesion, n, threads, p, queue))
             for p, n in enumerate(per_proc)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    total = {k: sum(r[k] for r in results) for k in ("ok", "failed", "mismatched", "wrong_id")}
    total["errors"] = [e for r in results for e in r["errors"]][:5]
    total.update(requests=requests, concurrency=threads * processes, processes=processes, seconds=wall,
                 requests_per_s=requests / wall)
    return total
