"""The end-to-end demo behind `make demo`: serve the bundled models (the CIFAR-10 toy model as
`cifar10`, the Tiny-ImageNet ResNet18 as `tiny-imagenet`) from one tritonserver, classify the
sample images of each through the client, print predictions, write gatta-map figures (OUT/NAME/),
stop, and print the command that opens the browser viewer on the same models.

Other models: `--model a.pt resnet=b.pt` (or `make demo MODELS="a.pt resnet=b.pt"`) serves each
under its name; each classifies the pictures named after its classes, or all of them when none
is."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gatta.client import GattaClient
from gatta.client.images import expand_paths
from gatta.client.maps import maps_figure
from gatta.serving.default_model import MODELS_HELP, checkpoints_or_bundled, models_repository
from gatta.serving.launcher import start_server


def true_label(path: Path, labels: list[str]) -> str | None:
    """The class a sample's file name says it is (``golden_retriever.jpg``: golden retriever)."""
    for name in (path.stem, path.stem.replace("_", " ")):
        if name in labels:
            return name
    return None


def demo_model(client: GattaClient, paths: list[Path], out: Path) -> None:
    """Classify ``paths`` with one served model: predictions, figures, the lesion's effect.
    When some file names are this model's classes, only those pictures (samples/ holds
    pictures for each bundled model, named by their class)."""
    info = client.info
    named = [p for p in paths if true_label(p, info.labels)]
    paths = named or paths
    results = client.classify(paths, top_k=3)
    print(f"\n{info.name}: {len(info.labels)} classes, {info.image_size}x{info.image_size} input, "
          f"layers {info.full_pattern}")
    width = max(12, *(len(r.label) for r in results))
    print(f"{'image':<22} {'prediction':<{width}} {'prob':>6}   top-3")
    for path, r in zip(paths, results):
        top3 = ", ".join(f"{label} {p:.2f}" for label, p in r.top_k)
        print(f"{path.name:<22} {r.label:<{width}} {r.prob:>6.2f}   {top3}")
        maps_figure(r, info, path, out / f"{path.stem}.png")
    if named:
        correct = sum(r.label == true_label(p, info.labels) for p, r in zip(paths, results))
        print(f"\n{correct}/{len(named)} correct (file names are the true classes)")
    off = "." * len(info.layers)
    lesioned = client.classify(paths, lesion=off)
    changed = sum(a.label != b.label for a, b in zip(results, lesioned))
    print(f"with attention switched off (lesion '{off}'): {changed} of {len(paths)} predictions change")
    print(f"gatta-map figures: {out}/*.png (raw maps beside them as .npz)")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", nargs="+", action="extend", metavar="[NAME=]CKPT",
                        help=MODELS_HELP)
    parser.add_argument("--images", type=Path, default=Path("samples"))
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()

    t0 = time.time()
    models = checkpoints_or_bundled(args.model)
    repo = models_repository(models, "python")
    print(f"model repository: {repo}")
    with start_server(repo, wait=180) as server:
        print(f"tritonserver ready in {time.time() - t0:.1f} s: HTTP {server.http_url}, gRPC {server.grpc_url}, "
              f"metrics {server.metrics_url}; models {', '.join(models)}")
        paths = expand_paths([args.images])
        for name in models:
            with GattaClient(server.http_url, model=name) as client:
                demo_model(client, paths, args.out if len(models) == 1 else args.out / name)
    print(f"server stopped; demo took {time.time() - t0:.1f} s")
    print("\nsee it in a browser: make view    (then open http://127.0.0.1:7860/; Ctrl-C stops)\n"
          "  the same by hand: gatta-serve & gatta-client view --url localhost:8000")


if __name__ == "__main__":
    main()
