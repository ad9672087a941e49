"""Restart tritonserver when a python-backend stub dies.

Seen with Triton 2.51: after its stub process is killed, a python-backend model answers every
request with "[500] Stub process '<model>_0_0' is not healthy." while /v2/health/ready and the
model's ready endpoint keep saying yes, and it never restarts the stub. Readiness probes
cannot see it, so ``gatta-serve`` watches the stub processes itself and restarts the server.
"""

from __future__ import annotations

import psutil

from .launcher import TritonProcess

STUB_NAME = "triton_python_backend_stub"


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def stub_processes(server: TritonProcess) -> dict[int, str]:
    """pid -> model instance name (e.g. ``gatta_0_0``) of each python-backend stub."""
    stubs = {}
    for pid in server.pids():
        args = _cmdline(pid)
        if len(args) >= 2 and args[0].endswith(STUB_NAME):
            stubs[pid] = args[-2]  # ... <instance name> <runtime>, e.g. gatta_0_0 DEFAULT
    return stubs


def _dead(pid: int) -> bool:
    """Gone, or a zombie (exited, never reaped)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def dead_stubs(server: TritonProcess, known: dict[int, str]) -> list[str]:
    """Instance names whose stub died while the server runs: a known stub that is gone or a
    zombie, or any zombie child of the server (Triton never reaps a dead stub, and a stub
    that died before ``known`` was taken has no command line left to name it)."""
    dead = {known[pid] for pid in known if _dead(pid)}
    for pid in server.pids():
        if pid != server.process.pid and _dead(pid):
            dead.add(known.get(pid, f"python-backend stub pid {pid}"))
    return sorted(dead)
