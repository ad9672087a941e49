"""Find and start the real ``tritonserver``; wait for readiness; stop it gracefully.

Where the binary comes from:
- ``tritonserver`` on PATH (NVIDIA's container): used as is, with its own backends.
- otherwise the build that the ``nvidia-pytriton`` wheel ships (python backend only). As that
  wheel's own launcher does, the tree is copied once into a cache folder with the
  python-backend stub built for the running Python, the wheel's bundled libraries and this
  Python's libpython go on LD_LIBRARY_PATH, and this environment's ``bin`` leads PATH: the
  stub runs the first ``python3`` it finds, and with any other interpreter (no numpy, or
  numpy 2) it fails or returns empty tensors.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .shutdown import CONTROL_HEADER, EXIT_TIMEOUT_S, DrainError, drain

ADMIN_APIS = "shared-memory,trace,logging"  # operators, with GATTA_ADMIN_KEY
CONTROL_APIS = "model-repository"  # the launcher alone, with a per-start key (see shutdown.py)


class LaunchError(RuntimeError):
    """tritonserver could not be found, started, or did not become ready."""


@dataclass
class ServerBinary:
    executable: Path
    backend_dir: Path | None  # None: the binary's built-in default
    env: dict = field(default_factory=dict)
    origin: str = "PATH"

    @property
    def backends(self) -> set[str]:
        root = self.backend_dir or Path("/opt/tritonserver/backends")
        return {p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set()


def cache_root() -> Path:
    return Path(os.environ.get("GATTA_CACHE", Path.home() / ".cache" / "gattanet"))


def _pytriton_binary() -> ServerBinary:
    try:
        import pytriton
    except ImportError:
        raise LaunchError("no tritonserver on PATH and nvidia-pytriton is not installed; "
                          "run inside NVIDIA's Triton container or pip install 'gattanet[serve]'") from None
    package = Path(pytriton.__file__).parent
    dist = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise LaunchError(f"nvidia-pytriton ships no python-backend stub for Python {version}")
    try:
        from importlib.metadata import version as pkg_version
        tag = pkg_version("nvidia-pytriton")
    except Exception:
        tag = "unknown"
    runtime = cache_root() / f"tritonserver-{tag}-py{version}"
    if not (runtime / "bin" / "tritonserver").exists():
        tmp = runtime.with_name(runtime.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(dist, tmp, ignore=shutil.ignore_patterns("python_backend_stubs"))
        shutil.copy2(stub, tmp / "backends" / "python" / "triton_python_backend_stub")
        runtime.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, runtime)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    libs = [package.parent / "nvidia_pytriton.libs", package / "tritonserver" / "external_libs",
            Path(sysconfig.get_config_var("LIBDIR") or "")]
    env = {
        "LD_LIBRARY_PATH": ":".join([str(p) for p in libs if p.exists()] + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    return ServerBinary(runtime / "bin" / "tritonserver", runtime / "backends", env, "nvidia-pytriton")


def find_server() -> ServerBinary:
    on_path = shutil.which("tritonserver")
    if on_path:
        return ServerBinary(Path(on_path), None, {}, "PATH")
    return _pytriton_binary()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (empty when ``root`` is gone)."""
    try:
        process = psutil.Process(root)
        return [root] + [p.pid for p in process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports: all bound at once, so the kernel cannot hand one out twice
    (ports asked for one by one, each released before the next, can repeat)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


@dataclass
class TritonProcess:
    """A running tritonserver. Use as a context manager, or call ``stop()``."""

    process: subprocess.Popen
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    admin_key: str
    control_key: str = field(default="", repr=False)
    placement_note: str = ""  # e.g. GPU models on their CPU twin (devices.py)
    models: list[str] = field(default_factory=list)  # every model of the repository, all loaded at start

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.is_file():  # e.g. /dev/stdout in the container: nothing to read back
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def models_not_ready(self) -> list[str]:
        """Models of the repository that do not answer ready (all of them while Triton starts)."""
        return [m for m in self.models if not self._ok(f"/v2/models/{m}/ready")]

    def ready(self) -> bool:
        """Triton ready and every model of the repository ready. Triton's strict readiness
        already waits for the models it loads; asking for each one by name also holds when a
        model is missing from what it loaded."""
        return self._ok("/v2/health/ready") and not self.models_not_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LaunchError(f"tritonserver exited with status {self.process.returncode} while starting:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.25)
        waiting = self.models_not_ready() if self._ok("/v2/health/ready") else self.models
        raise LaunchError(f"tritonserver not ready after {timeout:.0f} s (models not ready: "
                          f"{', '.join(waiting) or 'none'}):\n{self.log_tail()}")

    def pids(self) -> list[int]:
        """tritonserver and its descendants (python-backend stubs)."""
        return descendants(self.process.pid)

    def memory_rss(self) -> int:
        """Resident memory of the server and its stubs, bytes."""
        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def drain(self, timeout: float = 30.0) -> list[str]:
        """Unload every model, letting requests in flight finish (see shutdown.py)."""
        return drain(self.http_url, self.control_key, timeout)

    def stop(self, timeout: float = 60.0, drain_timeout: float | None = 30.0, echo=lambda m: None) -> int:
        """Drain the models (requests in flight finish, new ones are refused), then SIGTERM;
        Triton then exits within EXIT_TIMEOUT_S whatever idle connections clients hold.
        ``drain_timeout=None`` skips the drain (a model whose stub died never unloads)."""
        if self.process.poll() is None:
            if drain_timeout is not None and self.control_key:
                try:
                    self.drain(drain_timeout)
                except DrainError as exc:
                    echo(f"{exc}; stopping tritonserver anyway")
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the server and its stubs
                self.process.wait()
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def server_command(binary: ServerBinary, repository: Path, host: str, http_port: int, grpc_port: int,
                   metrics_port: int, admin_key: str, extra: list[str] = (), control_key: str = "") -> list[str]:
    control_key = control_key or secrets.token_hex(16)
    cmd = [str(binary.executable), f"--model-repository={repository}",
           f"--http-address={host}", f"--http-port={http_port}",
           f"--grpc-address={host}", f"--grpc-port={grpc_port}",
           f"--metrics-address={host}", f"--metrics-port={metrics_port}",
           # every model loaded at start; the repository API (load/unload) answers only the
           # launcher's control key, which it uses to drain the models on shutdown
           "--model-control-mode=explicit", "--load-model=*",
           f"--http-restricted-api={CONTROL_APIS}:{CONTROL_HEADER}={control_key}",
           f"--grpc-restricted-protocol={CONTROL_APIS}:{CONTROL_HEADER}={control_key}",
           f"--http-restricted-api={ADMIN_APIS}:admin-key={admin_key}",
           f"--grpc-restricted-protocol={ADMIN_APIS}:admin-key={admin_key}",
           "--allow-metrics=true", "--allow-gpu-metrics=true", "--metrics-interval-ms=1000",
           "--metrics-config=summary_latencies=true",  # p50/p90/p99 request latency
           f"--exit-timeout-secs={EXIT_TIMEOUT_S}", "--log-verbose=0"]
    if binary.backend_dir is not None:
        cmd.append(f"--backend-directory={binary.backend_dir}")
    return cmd + list(extra)


def start_server(repository: str | Path, host: str = "127.0.0.1", http_port: int = 0, grpc_port: int = 0,
                 metrics_port: int = 0, log_path: Path | None = None, wait: float | None = 120.0,
                 extra_args: list[str] = (), binary: ServerBinary | None = None,
                 admin_key: str | None = None, place: bool = True) -> TritonProcess:
    """Start tritonserver on the given ports (0: a free one). Waits for readiness unless
    ``wait`` is None. The admin key (shared-memory, trace, logging APIs) is ``admin_key``,
    else $GATTA_ADMIN_KEY, else a random one. ``place``: work out where the models run on
    this host first (devices.py: the CPU twin of GPU models on a host without a GPU)."""
    repository = Path(repository).resolve()
    if not repository.is_dir():
        raise LaunchError(f"model repository {repository} does not exist")
    binary = binary or find_server()
    note = ""
    if place:
        from .devices import PlacementError, placement

        try:
            where = placement(repository, binary.backends, binary.origin)
        except PlacementError as exc:
            raise LaunchError(str(exc)) from None
        extra_args, note = [*where.args, *extra_args], where.note
    given = {http_port, grpc_port, metrics_port}  # a spare must not be a port asked for
    spare = iter([p for p in free_ports(6, host) if p not in given])
    ports = [p or next(spare) for p in (http_port, grpc_port, metrics_port)]
    admin_key = admin_key or os.environ.get("GATTA_ADMIN_KEY") or secrets.token_hex(16)
    control_key = secrets.token_hex(16)
    log_path = log_path or (cache_root() / "logs" / f"tritonserver-{ports[0]}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **binary.env}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(server_command(binary, repository, host, *ports, admin_key, list(extra_args),
                                                  control_key),
                                   stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    models = sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))
    server = TritonProcess(process, host, *ports, log_path, admin_key, control_key, note, models)
    if wait is not None:
        try:
            server.wait_ready(wait)
        except LaunchError:
            server.stop(10, drain_timeout=None)
            raise
    return server
