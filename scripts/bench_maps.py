"""How fast `gatta-client classify --maps` draws: serve the bundled model, classify N copies of
the sample images once, then time the figure + raw-map writing alone (figures/s) and the whole
CLI run with and without --maps. Seconds, on whatever else the machine is doing."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from gatta.client import GattaClient
from gatta.client.cli import main as client_cli
from gatta.client.images import expand_paths
from gatta.client.maps import maps_figure
from gatta.serving.default_model import default_repository
from gatta.serving.launcher import start_server


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/cifar10-toy-d16.pt"))
    parser.add_argument("--images", type=Path, default=Path("samples"))
    parser.add_argument("-n", type=int, default=300, help="Images in all (copies of --images).")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-maps-"))
    images = work / "images"  # the figures go beside it, not into the folder the CLI walks
    images.mkdir()
    sources = expand_paths([args.images])
    for i in range(args.n):
        src = sources[i % len(sources)]
        shutil.copy(src, images / f"{i:04d}-{src.name}")
    paths = expand_paths([images])
    try:
        with start_server(default_repository(args.model, "python"), wait=180) as server:
            with GattaClient(server.http_url) as client:
                results = client.classify(paths)
                start = time.perf_counter()
                for path, result in zip(paths, results):
                    maps_figure(result, client.info, path, work / "maps" / f"{path.stem}.png")
                render = time.perf_counter() - start
            print(f"maps alone: {len(paths)} figures (PNG + .npz) in {render:.2f} s = {len(paths) / render:.0f} figures/s")
            for extra in ([], ["--maps", str(work / "cli-maps")]):
                start = time.perf_counter()
                r = CliRunner().invoke(client_cli, ["classify", str(images), "--url", server.http_url,
                                                    "--output", str(work / f"out{len(extra)}.jsonl"), *extra])
                assert r.exit_code == 0, r.output
                print(f"gatta-client classify {len(paths)} images {' '.join(extra[:1]) or '(no maps)'}: "
                      f"{time.perf_counter() - start:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
