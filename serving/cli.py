"""``gatta-serve``: run NVIDIA Triton Inference Server on a gattanet model repository."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import click

from .default_model import BUNDLED_CHECKPOINT, default_repository
from .launcher import LaunchError, ServerBinary, find_server, start_server
from .watchdog import dead_stubs, stub_processes


def has_gpu() -> bool:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_loadable(repository: Path, binary: ServerBinary) -> None:
    """Fail in one line when a model needs a backend or a GPU this host lacks."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    backends = binary.backends
    for path in sorted(repository.glob("*/config.pbtxt")):
        model = path.parent.name
        try:
            config = text_format.Parse(path.read_text(), mc.ModelConfig())
        except text_format.ParseError as exc:
            raise LaunchError(f"{path} is not a valid Triton model config: {exc}") from None
        backend = config.backend
        if backend and backends and backend not in backends:
            raise LaunchError(
                f"model '{model}' needs Triton's {backend} backend, which this tritonserver ({binary.origin}: "
                f"{', '.join(sorted(backends))}) lacks; re-export with `gatta-export --flavor python` "
                "or serve from NVIDIA's Triton container (see Dockerfile)")
        if any(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in config.instance_group) and not has_gpu():
            raise LaunchError(
                f"model '{model}' is configured for a GPU (KIND_GPU) and this host has none; re-export with "
                "`gatta-export --flavor python` for CPU serving")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model-repository", type=click.Path(path_type=Path), default=None,
              help="Triton model repository (gatta-export output). Default: the bundled CIFAR-10 model, "
                   "exported on first use into ~/.cache/gattanet.")
@click.option("--ckpt", type=click.Path(path_type=Path), default=BUNDLED_CHECKPOINT, show_default=True,
              help="Checkpoint to serve when no --model-repository is given.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (0.0.0.0 exposes the server).")
@click.option("--http-port", default=8000, show_default=True)
@click.option("--grpc-port", default=8001, show_default=True)
@click.option("--metrics-port", default=8002, show_default=True, help="Prometheus metrics at /metrics.")
@click.option("--log-file", type=click.Path(path_type=Path), default=None, help="tritonserver's log (default: in the cache folder).")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--watchdog-interval", default=2.0, show_default=True,
              help="Seconds between checks that python-backend stubs are alive (0: off). A dead stub "
                   "fails every request while Triton still reports ready, so the server is restarted.")
def main(model_repository, ckpt, host, http_port, grpc_port, metrics_port, log_file, timeout, watchdog_interval):
    """Serve a gattanet model with the real NVIDIA Triton Inference Server, in the foreground.

    Uses `tritonserver` from PATH (NVIDIA's container) or the build that ships in the
    nvidia-pytriton wheel (python backend, CPU). Ctrl-C or SIGTERM stops it gracefully:
    requests in flight finish first.
    """
    try:
        binary = find_server()
        if model_repository is None:
            flavour = "onnxruntime" if "onnxruntime" in binary.backends and has_gpu() else "python"
            model_repository = default_repository(ckpt, flavour, echo=lambda m: click.echo(m, err=True))
        check_loadable(Path(model_repository), binary)
        click.echo(f"starting tritonserver ({binary.origin}) on {model_repository} ...", err=True)
        server = start_server(model_repository, host, http_port, grpc_port, metrics_port, log_file,
                              wait=timeout, binary=binary)
    except (LaunchError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None

    stopping = []

    def forward(signum, _frame):
        if not stopping:
            stopping.append(signum)
            click.echo(f"\n{signal.Signals(signum).name}: stopping tritonserver (requests in flight finish first)",
                       err=True)
            server.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    click.echo(f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}")
    click.echo(f"log: {server.log_path}")
    stubs = stub_processes(server)
    while True:
        try:
            code = server.process.wait(timeout=watchdog_interval or None)
            break
        except subprocess.TimeoutExpired:
            pass
        dead = dead_stubs(server, stubs)
        if dead and not stopping:
            click.echo(f"python-backend stub of {', '.join(dead)} died (Triton keeps reporting ready but fails "
                       "its requests); restarting tritonserver", err=True)
            server.stop(10)  # a model with a dead stub never unloads: don't wait Triton's full exit timeout
            try:
                server = start_server(model_repository, host, server.http_port, server.grpc_port, server.metrics_port,
                                      log_file, wait=timeout, binary=binary)
            except LaunchError as exc:
                raise click.ClickException(f"restart failed: {exc}") from None
            stubs = stub_processes(server)
            click.echo("tritonserver restarted and ready", err=True)
            if stopping:  # a signal that arrived mid-restart went to the old process
                server.process.send_signal(signal.SIGTERM)
    if code != 0:
        click.echo(f"tritonserver exited with status {code}; last log lines:\n{server.log_tail(15)}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
