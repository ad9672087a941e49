"""``gatta-serve``: run NVIDIA Triton Inference Server on a gattanet model repository."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import click

from gatta import contract
from gatta.extras import onnxruntime_conflict

from .admin_key import KeyFileError, admin_key
from .default_model import BUNDLED_CHECKPOINT, ModelSpecError, models_repository, named_checkpoints
from .devices import Placement, PlacementError, placement, read_configs
from .launcher import LaunchError, ServerBinary, find_server, start_server
from .watchdog import dead_stubs, stub_processes


def check_loadable(repository: Path, binary: ServerBinary) -> Placement:
    """How this host can serve ``repository``; LaunchError in one line when it cannot."""
    try:
        return placement(Path(repository), binary.backends, binary.origin)
    except PlacementError as exc:
        raise LaunchError(str(exc)) from None


def served_models(repository: Path) -> list[str]:
    """The gattanet classifiers of a repository (their configs carry the model metadata)."""
    return sorted(name for name, config in read_configs(repository).items() if contract.is_gattanet_config(config))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model-repository", type=click.Path(path_type=Path), default=None,
              help="Triton model repository (gatta-export output); every model in it is served. Default: the "
                   "bundled CIFAR-10 model, exported on first use into ~/.cache/gattanet.")
@click.option("--ckpt", "ckpts", multiple=True, default=[str(BUNDLED_CHECKPOINT)], show_default=True,
              help="Checkpoint to serve when no --model-repository is given, as PATH or NAME=PATH; repeat it to "
                   "serve several models side by side. A lone PATH is served as 'gatta', several by their file "
                   "names (models/a.pt: 'a').")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (0.0.0.0 exposes the server).")
@click.option("--http-port", default=8000, show_default=True)
@click.option("--grpc-port", default=8001, show_default=True)
@click.option("--metrics-port", default=8002, show_default=True, help="Prometheus metrics at /metrics.")
@click.option("--log-file", type=click.Path(path_type=Path), default=None, help="tritonserver's log (default: in the cache folder).")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--watchdog-interval", default=2.0, show_default=True,
              help="Seconds between checks that python-backend stubs are alive (0: off). A dead stub "
                   "fails every request while Triton still reports ready, so the server is restarted.")
@click.option("--drain-timeout", default=30.0, show_default=True,
              help="On SIGTERM/Ctrl-C, seconds that requests in flight get to finish before tritonserver stops.")
@click.option("--admin-key-file", type=click.Path(path_type=Path), default=None,
              help="Admin key for the shared-memory, trace and logging APIs when GATTA_ADMIN_KEY is unset: read "
                   "from this file, or a random key written there (mode 600) when the file does not exist.")
def main(model_repository, ckpts, host, http_port, grpc_port, metrics_port, log_file, timeout, watchdog_interval,
         drain_timeout, admin_key_file):
    """Serve gattanet models with the real NVIDIA Triton Inference Server, in the foreground.

    Uses `tritonserver` from PATH (NVIDIA's container) or the build that ships in the
    nvidia-pytriton wheel (python backend, CPU). Ready once every model is; Ctrl-C or SIGTERM
    stops it gracefully: requests in flight to every model finish first.

    \b
    Examples:
      gatta-serve                                        # the bundled CIFAR-10 model, as 'gatta'
      gatta-serve --model-repository model_repository    # every model gatta-export wrote there
      gatta-serve --ckpt cifar10=models/cifar10-toy-d16.pt --ckpt resnet18=runs/resnet/best.pt
    """
    stopping = threading.Event()

    def on_signal(signum, _frame):
        if not stopping.is_set():
            click.echo(f"\n{signal.Signals(signum).name}: draining (requests in flight finish, new ones are refused), "
                       "then stopping tritonserver", err=True)
            stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    echo = lambda m: click.echo(m, err=True)  # noqa: E731
    if conflict := onnxruntime_conflict():  # the python-backend stub imports this environment's onnxruntime
        echo(f"warning: {conflict}")
    try:
        key = admin_key(admin_key_file, echo)
        binary = find_server()
        if model_repository is None:  # python flavour for a GPU, with its CPU twin: runs on any host
            model_repository = models_repository(named_checkpoints(ckpts), "python", echo=echo, device="gpu")
        place = check_loadable(Path(model_repository), binary)
        if place.note:
            echo(place.note)
        extra_args = place.args
        click.echo(f"starting tritonserver ({binary.origin}) on {model_repository} ...", err=True)
        server = start_server(model_repository, host, http_port, grpc_port, metrics_port, log_file,
                              wait=timeout, binary=binary, extra_args=extra_args, admin_key=key, place=False)
    except (LaunchError, FileNotFoundError, KeyFileError, ModelSpecError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}")
    click.echo(f"models: {', '.join(served_models(Path(model_repository)))} (gatta-client --model NAME)")
    click.echo(f"log: {server.log_path}")
    stubs = stub_processes(server)
    checked = time.monotonic()
    while server.process.poll() is None:
        if stopping.wait(0.2):
            server.stop(drain_timeout=drain_timeout, echo=echo)
            break
        if not watchdog_interval or time.monotonic() - checked < watchdog_interval:
            continue
        checked = time.monotonic()
        dead = dead_stubs(server, stubs)
        if dead:
            click.echo(f"python-backend stub of {', '.join(dead)} died (Triton keeps reporting ready but fails "
                       "its requests); restarting tritonserver", err=True)
            server.stop(10, drain_timeout=None)  # a model with a dead stub never unloads
            try:
                server = start_server(model_repository, host, server.http_port, server.grpc_port, server.metrics_port,
                                      log_file, wait=timeout, binary=binary, extra_args=extra_args, admin_key=key,
                                      place=False)
            except LaunchError as exc:
                raise click.ClickException(f"restart failed: {exc}") from None
            stubs = stub_processes(server)
            click.echo("tritonserver restarted and ready", err=True)
    code = server.process.wait()
    if code != 0:
        click.echo(f"tritonserver exited with status {code}; last log lines:\n{server.log_tail(15)}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
