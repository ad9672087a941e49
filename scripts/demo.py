"""The end-to-end demo behind `make demo`: serve the bundled model with Triton, classify the
sample images through the client, print predictions, write gatta-map figures, stop, and print
the command that opens the browser viewer on the same model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gatta.client import GattaClient
from gatta.client.images import expand_paths
from gatta.client.maps import maps_figure
from gatta.serving.default_model import default_repository
from gatta.serving.launcher import start_server


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/cifar10-toy-d16.pt"))
    parser.add_argument("--images", type=Path, default=Path("samples"))
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()

    t0 = time.time()
    repo = default_repository(args.model, "python")
    print(f"model repository: {repo}")
    with start_server(repo, wait=180) as server:
        print(f"tritonserver ready in {time.time() - t0:.1f} s: HTTP {server.http_url}, gRPC {server.grpc_url}, "
              f"metrics {server.metrics_url}")
        paths = expand_paths([args.images])
        with GattaClient(server.http_url) as client:
            results = client.classify(paths, top_k=3)
            print(f"\n{'image':<16} {'prediction':<12} {'prob':>6}   top-3")
            correct = 0
            for path, r in zip(paths, results):
                correct += r.label == path.stem
                top3 = ", ".join(f"{label} {p:.2f}" for label, p in r.top_k)
                print(f"{path.name:<16} {r.label:<12} {r.prob:>6.2f}   {top3}")
                maps_figure(r, client.info, path, args.out / f"{path.stem}.png")
            print(f"\n{correct}/{len(paths)} correct (file names are the true classes)")
            lesioned = client.classify(paths, lesion=".....")
            changed = sum(a.label != b.label for a, b in zip(results, lesioned))
            print(f"with attention switched off (lesion '.....'): {changed} of {len(paths)} predictions change")
        print(f"gatta-map figures: {args.out}/*.png (raw maps beside them as .npz)")
    print(f"server stopped; demo took {time.time() - t0:.1f} s")
    print("\nsee it in a browser: make view    (then open http://127.0.0.1:7860/; Ctrl-C stops)\n"
          "  the same by hand: gatta-serve & gatta-client view --url localhost:8000")


if __name__ == "__main__":
    main()
