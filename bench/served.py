"""The two sides that `make bench` compares: in-process ONNX Runtime and one tritonserver under
load from a separate process, each measured in windows with the CPU every process used."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil

from gatta import contract
from gatta.serving.launcher import start_server

from .interleaved import Window


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class InProcess:
    """ONNX Runtime in this process, default session options (all cores)."""

    def __init__(self, model_path: Path, size: int):
        quiet = ort.SessionOptions()
        quiet.log_severity_level = 3  # only silences warnings; every performance option stays default
        self.session = ort.InferenceSession(str(model_path), quiet, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        self.feeds = {b: {contract.IMAGE: rng.random((b, 3, size, size), dtype=np.float32)} for b in (1, 16)}
        self.me = psutil.Process()
        for b in self.feeds:
            self.session.run([contract.PROBS], self.feeds[b])

    def window(self, batch: int, seconds: float) -> Window:
        feeds, run = self.feeds[batch], self.session.run
        lat, cpu0, t0 = [], cpu_seconds([self.me]), time.perf_counter()
        while (now := time.perf_counter()) - t0 < seconds:
            run([contract.PROBS], feeds)
            lat.append((time.perf_counter() - now) * 1e3)
        wall = time.perf_counter() - t0
        return Window(len(lat) * batch, wall, lat, {"cpu_s": {"in-process": cpu_seconds([self.me]) - cpu0}})


class Served:
    """One tritonserver hosting one exported configuration; load comes from gatta.bench.window."""

    def __init__(self, repo: Path, size: int):
        self.server = start_server(repo, wait=180)
        self.size = size
        root = psutil.Process(self.server.process.pid)
        self.front, self.stubs = [root], root.children(recursive=True)

    def window(self, batch: int, concurrency: int, seconds: float) -> Window:
        cmd = [sys.executable, "-m", "gatta.bench.window", "--url", self.server.grpc_url, "--protocol", "grpc",
               "--batch", str(batch), "--concurrency", str(concurrency), "--seconds", str(seconds),
               "--size", str(self.size)]
        # Server CPU is read around the whole client process; the client's start-up and warm-up
        # requests count too, so per-image server CPU is slightly overstated (a few requests).
        front0, stubs0 = cpu_seconds(self.front), cpu_seconds(self.stubs)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        out, _ = client.communicate(timeout=seconds + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the one child reaped meanwhile
        cpu_client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if client.returncode != 0:
            raise RuntimeError(f"load window failed ({' '.join(cmd)}): exit {client.returncode}")
        r = json.loads(out.strip().splitlines()[-1])
        if r["failures"]:
            raise RuntimeError(f"{r['failures']} failed requests in a load window")
        return Window(r["items"], r["seconds"], r["latencies_ms"],
                      {"cpu_s": {"client": cpu_client, "tritonserver": cpu_seconds(self.front) - front0,
                                 "python stubs": cpu_seconds(self.stubs) - stubs0}})

    def stop(self):
        self.server.stop()


def cpu_per_image(windows: list[Window]) -> dict[str, float]:
    """Median CPU milliseconds per image, per process kind."""
    kinds = windows[0].extra["cpu_s"]
    return {k: float(np.median([w.extra["cpu_s"][k] / w.items * 1e3 for w in windows])) for k in kinds}
