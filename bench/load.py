"""A closed-loop load generator: ``concurrency`` loops each send requests back to back
through the public :class:`gatta.client.GattaClient` API."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
from PIL import Image

from gatta.client import GattaClient


def _png_bytes(images: np.ndarray) -> list[bytes]:
    blobs = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray((img.transpose(1, 2, 0) * 255).astype(np.uint8)).save(buf, "PNG")
        blobs.append(buf.getvalue())
    return blobs


def run_bench(url: str, protocol: str, model: str, concurrency: int, batch_size: int, n_requests: int,
              maps: bool = True, timeout: float = 60.0, seed: int = 0, encoded: bool = False) -> dict:
    """Throughput and latency percentiles. ``encoded``: send PNG bytes to the preprocessing
    ensemble instead of tensors."""
    client = GattaClient(url, protocol, model, timeout=timeout)
    size = client.info.image_size
    images = np.random.default_rng(seed).random((batch_size, 3, size, size), dtype=np.float32)
    if encoded:
        blobs = _png_bytes(images)

        def send():
            return client.infer_encoded(blobs)
    else:
        def send():
            return client.infer(images, maps=maps)
    send()  # warm-up, also checks the model answers
    latencies: list[float] = []
    failures = [0]
    counter = iter(range(n_requests))
    lock = threading.Lock()

    def loop():
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            start = time.perf_counter()
            try:
                send()
            except Exception:
                with lock:
                    failures[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
        client.close()

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {"requests": n_requests, "batch_size": batch_size, "concurrency": concurrency, "protocol": protocol,
            "failures": failures[0], "seconds": wall, "requests_per_s": len(latencies) / wall,
            "images_per_s": len(latencies) * batch_size / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
            "p99_ms": float(np.percentile(lat, 99))}
