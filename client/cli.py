"""``gatta-client``: classify images, check health, show the model, benchmark a server.
Options and output only: the work is in ``GattaClient``, ``batch`` and ``gatta.bench``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gatta.lesion import LesionError, full_pattern

from .batch import classify_files, pending
from .client import GattaClient
from .errors import ClientError
from .images import expand_paths
from .models import AmbiguousModel


def _url(url: str | None, protocol: str) -> str:
    return url or ("localhost:8001" if protocol == "grpc" else "localhost:8000")


def connection_options(fn):
    for opt in reversed([
        click.option("--url", default=None, help="Server host:port [localhost:8000 http, localhost:8001 grpc]."),
        click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http", show_default=True),
        click.option("--model", default=None,
                     help="Model name on the server [default: its only gattanet model; when it hosts several, "
                          "name one]."),
        click.option("--timeout", default=60.0, show_default=True, help="Seconds per request."),
    ]):
        fn = opt(fn)
    return fn


metrics_option = click.option(
    "--metrics-port", type=int, default=None,
    help="Expose the client's Prometheus metrics (latency, errors, predictions) on this port.")


def serve_metrics(port: int | None) -> None:
    if port:
        from .metrics import serve_metrics as start

        start(port)


def connect(url, protocol, model, timeout, **kw) -> GattaClient:
    try:
        return GattaClient(_url(url, protocol), protocol, model, timeout=timeout, **kw)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Client for gattanet models served by NVIDIA Triton (start one with `gatta-serve`)."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@connection_options
@metrics_option
@click.option("--top-k", default=5, show_default=True)
@click.option("--lesion", default=None, help="Switch attention off per layer, paper notation, e.g. c.cdd.")
@click.option("--prior", default=None, help="Top-down attention: bias the global query towards this class.")
@click.option("--prior-strength", default=0.3, show_default=True, help="How far to move the global query towards --prior. The useful range depends on the "
              "model: on the bundled CIFAR-10 model 0.1-0.3 helps and from 0.5 on it hurts even the "
              "right class (docs/results.md).")
@click.option("--maps", "maps_dir", type=click.Path(path_type=Path), default=None,
              help="Write one Figure-3-style PNG per image (image + alpha*gatta map per layer) and its raw maps (.npz) here.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line on stdout.")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Append JSONL results to this file.")
@click.option("--resume", is_flag=True, help="Skip images already classified in --output.")
@click.option("--concurrency", default=4, show_default=True, help="Requests in flight.")
@click.option("--batch-size", default=8, show_default=True, help="Images per request.")
def classify(inputs, url, protocol, model, timeout, metrics_port, top_k, lesion, prior, prior_strength, maps_dir, as_json,
             output, resume, concurrency, batch_size):
    """Classify image files or directories (walked recursively).

    \b
    Examples:
      gatta-client classify cat.jpg
      gatta-client classify photos/ --output results.jsonl --resume --maps maps/
      gatta-client classify ship.jpg --lesion c.cdd --json
    """
    from tqdm.auto import tqdm

    if resume and output is None:
        raise click.UsageError("--resume needs --output")
    paths = expand_paths(inputs)
    if resume:
        paths, skipped = pending(paths, output)
        if skipped:
            click.echo(f"resuming: {skipped} already in {output}, {len(paths)} to go", err=True)
    serve_metrics(metrics_port)
    client = connect(url, protocol, model, timeout, prior_strength=prior_strength)
    want_maps = maps_dir is not None
    if want_maps:
        from .maps import MapWriter

        writer = MapWriter(client.info)
    failures = ok = 0
    results = classify_files(client, paths, output, concurrency=concurrency, batch_size=batch_size,
                             top_k=top_k, lesion=lesion, maps=want_maps, prior=prior)
    try:
        if not as_json and not output:
            click.echo(f"{'image':<40} {'label':<14} {'prob':>6}  top-3")
        # a progress bar only when the results go to a file and stdout is free for it
        bar = tqdm(results, total=len(paths), disable=not (output and not as_json and len(paths) > 1),
                   desc="classifying", unit="img")
        for result, path in bar:
            if as_json:
                click.echo(json.dumps(result.to_json()))
            elif result.ok and not output:
                top3 = ", ".join(f"{l} {p:.2f}" for l, p in result.top_k[:3])
                click.echo(f"{result.source[-40:]:<40} {result.label:<14} {result.prob:>6.3f}  {top3}")
            if not result.ok:
                failures += 1
                click.echo(f"{result.source}: {result.error}", err=True)
                continue
            ok += 1
            if want_maps:
                writer.write(result, path, maps_dir / f"{Path(result.source).stem}.png")
    except (ClientError, LesionError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if want_maps:
            writer.close()
        results.close()  # closes the JSONL file
        client.close()
    if failures:
        click.echo(f"{ok} classified, {failures} failed", err=True)
        sys.exit(2)


@main.command()
@connection_options
@click.option("--infer", is_flag=True,
              help="Also send one tiny inference: the liveness check that sees a model which cannot answer "
                   "while Triton still reports ready (container HEALTHCHECK, Kubernetes liveness probe).")
def health(url, protocol, model, timeout, infer):
    """Server liveness/readiness and whether the model is ready (exit status 0 only if all are).
    Without --model on a server with several gattanet models: every one of them."""
    try:
        clients = [GattaClient(_url(url, protocol), protocol, model, timeout=timeout, retries=0)]
    except AmbiguousModel as exc:  # a probe of the whole server: each model must answer
        clients = [connect(url, protocol, name, timeout, retries=0) for name in exc.names]
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None
    healthy, parts = True, []
    for client in clients:
        try:
            state = client.health()
        except ClientError as exc:
            raise click.ClickException(str(exc)) from None
        if not parts:
            parts.append(f"live={'yes' if state['live'] else 'no'} ready={'yes' if state['ready'] else 'no'}")
        line = f"model_ready={'yes' if state['model_ready'] else 'no'}"
        if len(clients) > 1:
            line = f"{client.model}: {line}"
        if infer and all(state.values()):
            try:
                line += f" infer=yes ({client.probe() * 1000:.1f} ms)"
            except ClientError as exc:
                state["infer"] = False
                line += f" infer=no: {exc}"
        healthy &= all(state.values())
        parts.append(line)
    click.echo((" " if len(clients) == 1 else "; ").join(parts))
    sys.exit(0 if healthy else 1)


@main.command()
@connection_options
@click.option("--json", "as_json", is_flag=True)
def info(url, protocol, model, timeout, as_json):
    """The served model: flavour, device and execution provider, input, classes, attached layers
    and outputs."""
    client = connect(url, protocol, model, timeout)
    i = client.info
    if as_json:
        click.echo(json.dumps({"name": i.name, "flavour": i.flavour, "image_size": i.image_size, "d": i.d,
                               "labels": i.labels, "layers": [vars(l) for l in i.layers],
                               "max_batch_size": i.max_batch_size, "inputs": i.input_names,
                               "outputs": i.output_names, "device": client.device}))
        return
    click.echo(f"model       {i.name} ({i.flavour} flavour{', baseline' if i.baseline else ''})")
    click.echo(f"device      {client.device}")
    click.echo(f"input       image 3x{i.image_size}x{i.image_size} FP32 in [0,1], max batch {i.max_batch_size}")
    click.echo(f"classes     {len(i.labels)}: {', '.join(i.labels[:10])}{' ...' if len(i.labels) > 10 else ''}")
    click.echo(f"attention   d={i.d}, lesion pattern {full_pattern(i.kinds)}")
    for layer in i.layers:
        click.echo(f"  {layer.name:<10} {layer.kind:<6} gatta map {'x'.join(map(str, layer.shape))}")
    click.echo(f"outputs     {', '.join(i.output_names)}")


@main.command()
@connection_options
@metrics_option
@click.option("--concurrency", default=8, show_default=True, help="Parallel request loops.")
@click.option("--batch-size", default=1, show_default=True, help="Images per request.")
@click.option("--requests", "n_requests", default=200, show_default=True, help="Requests in all.")
@click.option("--maps/--no-maps", default=True, show_default=True, help="Fetch gatta maps too.")
@click.option("--encoded", is_flag=True, help="Send PNG bytes to MODEL_encoded (server-side decoding) instead of tensors.")
@click.option("--json", "as_json", is_flag=True)
def bench(url, protocol, model, timeout, metrics_port, concurrency, batch_size, n_requests, maps, encoded, as_json):
    """Throughput and latency percentiles at a given concurrency and batch size (closed loop:
    CONCURRENCY threads each send their next request when the last one returns)."""
    from gatta.bench.load import run_bench

    serve_metrics(metrics_port)
    try:
        report = run_bench(_url(url, protocol), protocol, model, concurrency, batch_size, n_requests, maps, timeout,
                           encoded=encoded)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{report['requests']} requests x {batch_size} images, concurrency {concurrency}, {protocol}: "
               f"{report['images_per_s']:.1f} img/s, {report['requests_per_s']:.1f} req/s, "
               f"p50 {report['p50_ms']:.2f} ms, p90 {report['p90_ms']:.2f} ms, p99 {report['p99_ms']:.2f} ms, "
               f"{report['failures']} failures")


@main.command()
@connection_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address of the viewer (0.0.0.0 exposes it).")
@click.option("--port", default=7860, show_default=True, help="Port of the viewer page.")
def view(url, protocol, model, timeout, host, port):
    """Open a browser viewer: drop an image, see the prediction and its gatta maps, switch
    attention per layer, add a top-down prior. Needs the [view] extra.

    \b
    Example:
      gatta-client view --url localhost:8000      # then open http://127.0.0.1:7860/

    The page lists every gattanet model on the server and opens on --model (default: the only
    one, or the first by name).
    """
    from gatta.extras import MissingExtraError, require

    try:
        require("starlette", "view")
        require("uvicorn", "view")
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from None
    from .viewer import serve

    try:  # the page has a model picker: with several models and no --model, it opens on the first
        client = GattaClient(_url(url, protocol), protocol, model, timeout=timeout)
    except AmbiguousModel as exc:
        client = connect(url, protocol, exc.names[0], timeout)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"gatta viewer for '{client.info.name}' at {client.url}: open http://{host}:{port}/ (Ctrl-C stops)")
    serve(client, host, port)


if __name__ == "__main__":
    main()
