"""Comparisons that a second run reproduces: alternating measurement windows over several
rounds, the machine's load recorded around them, ratios taken within a round.

A ratio between two rows measured minutes apart on a shared machine compares two moments, not
two systems. Here each round measures every row once, back to back, in an order that flips from
round to round (ABBA), and the reported figure is the median of the per-round ratios with their
spread (min-max); a busy machine is said out loud.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil

BUSY_OTHERS_CPU = 10.0  # % of one core used by processes outside this run


def _own_tree() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.children(recursive=True))}


def machine_load(sample_s: float = 1.0, exclude: set[int] | None = None) -> dict:
    """Load average and the CPU that processes outside this run (and ``exclude``) used over
    ``sample_s`` seconds, with the busiest of them named."""
    skip = _own_tree() | (exclude or set())
    procs = [p for p in psutil.process_iter(["pid", "name"]) if p.pid not in skip]
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(sample_s)
    usage = []
    for p in procs:
        try:
            usage.append((p.cpu_percent(None), p.info["name"], p.pid))
        except psutil.Error:
            pass
    usage.sort(reverse=True)
    return {"loadavg": [round(v, 2) for v in os.getloadavg()], "cores": os.cpu_count(),
            "others_cpu_percent": round(sum(u for u, _, _ in usage), 1),
            "busiest": [f"{name} ({pid}) {u:.0f}%" for u, name, pid in usage[:5] if u >= 1.0]}


def is_busy(load: dict) -> bool:
    """Other processes used the CPU while we sampled. The load average is recorded but not
    used here: it counts this run's own processes and lags a minute behind any earlier job."""
    return load["others_cpu_percent"] > BUSY_OTHERS_CPU


@dataclass
class Window:
    """What one row measured in one window."""

    items: int  # images processed
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.items / self.seconds


SETTLE_S = 0.1  # ONNX Runtime's idle intra-op threads spin after a run; let them park first


def timed_block(session, feeds: dict, reps: int, warmup: int = 2) -> float:
    """Median seconds of ``reps`` back-to-back runs of one session, after ``SETTLE_S`` of quiet
    and ``warmup`` untimed runs: the steady state a server running one model sees. Without
    them the other session's spinning threads and cold caches land on this one: the toy
    baseline at batch 64 read 7.2 ms right after a GAttANet run instead of 5.0 ms, and the
    GAttANet / baseline ratio 1.90x instead of 2.60x (or 2.9x in the other order)."""
    time.sleep(SETTLE_S)
    for _ in range(warmup):
        session.run(None, feeds)
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        session.run(None, feeds)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def steady_rounds(sessions: dict, feeds: dict, rounds: int, reps: int = 7) -> dict[str, list[float]]:
    """Seconds per run of each session (anything with ONNX Runtime's ``run(None, feeds)``), one
    ``timed_block`` per session per round, even rounds in the given order and odd rounds
    reversed, so that ratios can be taken within a round. Each session runs once first (its
    first run allocates)."""
    for s in sessions.values():
        s.run(None, feeds)
    names = list(sessions)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names if r % 2 == 0 else reversed(names):
            times[k].append(timed_block(sessions[k], feeds, reps))
    return times


def fmt_spread(s: dict, unit: str = "x") -> str:
    """A spread() as ``median [min-max]`` with two decimals."""
    return f"{s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}]{unit}"


def close_run(result: dict, json_path=None) -> None:
    """The end of a measurement script: the machine's load after the run beside the load before
    it (``result["load_start"]``), printed, and the result written to ``json_path`` if given."""
    import json

    result["load_end"] = machine_load()
    print(f"\nload before {result['load_start']}, after {result['load_end']}")
    if json_path:
        json_path.write_text(json.dumps(result, indent=1))


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def interleave(rows: dict[str, Callable[[], Window]], rounds: int, progress=lambda msg: None) -> dict[str, list[Window]]:
    """Run every row once per round; even rounds in the given order, odd rounds reversed."""
    names = list(rows)
    out: dict[str, list[Window]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            out[name].append(rows[name]())
        progress(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {out[n][-1].per_s:,.0f}/s" for n in names))
    return out


def ratios(windows: dict[str, list[Window]], num: str, den: str) -> dict:
    """Median and spread of per-round throughput ratios num/den."""
    return spread([a.per_s / b.per_s for a, b in zip(windows[num], windows[den])])


def latency_overhead(windows: dict[str, list[Window]], served: str, local: str) -> dict:
    """Per-round difference of median latencies (ms): what serving adds to a request."""
    return spread([statistics.median(a.latencies_ms) - statistics.median(b.latencies_ms)
                   for a, b in zip(windows[served], windows[local])])
