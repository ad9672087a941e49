"""The viewer on the bundled models in one command (`make view`): start tritonserver with the
bundled models (cifar10, tiny-imagenet; the page's model picker switches between them) on free
loopback ports, serve `gatta-client view`'s page on --port, stop both on Ctrl-C. With
--screenshot, drive Debian's chromium through Playwright instead: open the page on --show's
model, classify --image, save a PNG of the page, print page-load and round-trip times, stop.

Several models: `--model a.pt resnet=b.pt` (or `make view MODELS="a.pt resnet=b.pt"`) serves each
under its name from one tritonserver; the page's model picker switches between them.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from pathlib import Path

from gatta.client import GattaClient
from gatta.client.viewer import Viewer
from gatta.serving.default_model import MODELS_HELP, checkpoints_or_bundled, models_repository
from gatta.serving.launcher import start_server

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]


def screenshot(url: str, image: Path, out: Path, repeats: int = 10) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1480, "height": 760})
        loads = []
        for _ in range(3):
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("#toggles input")
            loads.append(time.perf_counter() - start)
        trips = []
        for i in range(repeats):  # alternate lesions so every round trip is a fresh request
            start = time.perf_counter()
            if i == 0:
                page.set_input_files("#file", str(image))
            else:
                page.click("#toggles input >> nth=1")
            page.wait_for_function(f"Number(document.body.dataset.done) > {i} && document.body.dataset.pending === '0'")
            trips.append(time.perf_counter() - start)
        if repeats % 2 == 0:  # leave every layer on for the picture
            page.click("#toggles input >> nth=1")
            page.wait_for_function(f"Number(document.body.dataset.done) > {repeats}")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(f"page load (to controls ready) median {1e3 * statistics.median(loads):.0f} ms over {len(loads)}; "
          f"classify round trip in the page median {1e3 * statistics.median(trips):.0f} ms, "
          f"max {1e3 * max(trips):.0f} ms over {len(trips)}; screenshot {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", nargs="+", action="extend", metavar="[NAME=]CKPT",
                        help=MODELS_HELP)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--screenshot", type=Path, default=None, help="Save a PNG of the page here and exit.")
    parser.add_argument("--image", type=Path, default=Path("samples/ship.jpg"), help="The image for --screenshot.")
    parser.add_argument("--show", metavar="NAME", help="The model the page opens on (default: the first served).")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwind: tritonserver stops with us
    models = checkpoints_or_bundled(args.model)
    if args.show is not None and args.show not in models:
        parser.error(f"--show {args.show}: not a served model ({', '.join(models)})")
    with start_server(models_repository(models, "python"), wait=180) as server:
        with GattaClient(server.http_url, model=args.show or next(iter(models))) as client, \
                Viewer(client, args.host, 0 if args.screenshot else args.port) as viewer:
            if args.screenshot:
                screenshot(viewer.url + "/", args.image, args.screenshot)
                return
            print(f"tritonserver on {server.http_url} serving {', '.join(models)}; viewer at {viewer.url}/ "
                  "(Ctrl-C stops both)", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("stopping")


if __name__ == "__main__":
    main()
