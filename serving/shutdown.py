"""Prompt, clean shutdown: drain the models first, then let Triton exit.

Why not just SIGTERM: Triton 2.51 first waits for every HTTP connection on the inference port
to close (idle keep-alive ones included: browsers, load balancers, scrapers hold them) for up
to ``--exit-timeout-secs``, and then hands the core only the seconds *left* to finish requests
and unload models. One idle client therefore costs the whole timeout, and the core, left with
0 s, fails with "Exit timeout expired" and exit status 1 (server PR #6986 introduced the wait).

So the launcher runs Triton with model control ``explicit`` (all models loaded at start) and a
short exit timeout, and stops it in two steps:

1. unload every model through the repository API: Triton refuses new requests for a model
   being unloaded and unloads it once its requests in flight are done. Ensembles go first, so
   a request already inside an ensemble still finds the models it calls next.
2. SIGTERM: the wait for idle connections is now bounded by the short exit timeout, and the
   core finds nothing left to stop.

The repository API answers only a random per-start control key that the launcher holds and
never prints, so nobody else can load or unload models (or upload a model to run).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

EXIT_TIMEOUT_S = 3  # Triton's wait for idle HTTP connections once the models are drained
CONTROL_HEADER = "control-key"


class DrainError(RuntimeError):
    """The models could not all be unloaded in time (Triton is stopped anyway)."""


def _call(url: str, key: str, method: str = "POST", timeout: float = 5.0):
    request = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method,
                                     headers={CONTROL_HEADER: key})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def loaded_models(http_url: str, key: str) -> list[str]:
    """Models with a version READY or UNLOADING (the repository index)."""
    index = _call(f"http://{http_url}/v2/repository/index", key)
    return sorted({m["name"] for m in index if m.get("state") in ("READY", "UNLOADING")})


def _is_ensemble(http_url: str, name: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/models/{name}/config", timeout=5) as r:
            return json.loads(r.read()).get("platform") == "ensemble"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _unload_and_wait(http_url: str, key: str, names: list[str], deadline: float) -> None:
    for name in names:
        _call(f"http://{http_url}/v2/repository/models/{name}/unload", key)
    while set(names) & set(loaded_models(http_url, key)):
        if time.monotonic() > deadline:
            left = sorted(set(names) & set(loaded_models(http_url, key)))
            raise DrainError(f"models {', '.join(left)} still busy after the drain timeout")
        time.sleep(0.05)


def drain(http_url: str, key: str, timeout: float = 30.0) -> list[str]:
    """Unload every loaded model (ensembles first), waiting for requests in flight to finish.
    Returns the models unloaded; raises DrainError past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    try:
        names = loaded_models(http_url, key)
        ensembles = [n for n in names if _is_ensemble(http_url, n)]
        _unload_and_wait(http_url, key, ensembles, deadline)
        _unload_and_wait(http_url, key, [n for n in names if n not in ensembles], deadline)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DrainError(f"cannot drain the models through the repository API: {exc}") from None
    return names
