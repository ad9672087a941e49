"""Is the training step fed? Streamed data (read, decode, random-resized crop, flip in
DataLoader workers) against a ResNet18 training step, each alone and together.
`--step head` times the GAttANet head step instead (the paper's ResNet head, d=8, on a frozen
ResNet18; Adam), the step of `gatta-train head` on a ResNet.

Prints images/s for: the loader alone (decoded and delivered, no model), the step alone
(forward, backward, SGD on a synthetic batch already on the device) and the loader feeding the
step. When "fed" falls well below "step alone", the device waits for data: add --workers, or
store the pictures smaller. Usage:

    python scripts/bench_data.py [--data PATH] [--image-size 224] [--batch 64] [--workers 4] [--seconds 60]

Without --data it writes a temporary ImageFolder of JPEGs the size of typical ImageNet photos
(500x375). Each measurement runs for a third of --seconds after a warm-up.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gatta.decoder import Preprocessing
from gatta.training.streaming import stream_dataset
from gatta.training.train import resolve_device


def photo_tree(root: Path, n: int, classes: int = 10, size=(500, 375), seed: int = 0) -> Path:
    """JPEGs with smooth content (JPEG-typical sizes, ~50-100 KB), ``n`` in ``classes`` folders."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        f = rng.uniform(0.005, 0.05, 3)
        pixels = np.stack([127 + 120 * np.sin(f[c] * x + f[(c + 1) % 3] * y + c) for c in range(3)], -1)
        pixels += rng.normal(0, 12, pixels.shape)
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        (folder / f"{i:06d}.jpg").write_bytes(buf.getvalue())
    return root


def rate(batches, seconds: float, step=None, warmup: int = 1) -> tuple[float, int]:
    """(images/s, images) over ``seconds`` after ``warmup`` batches; loops over ``batches()``."""
    seen, start, it = 0, None, iter(())
    n_warm = 0
    while True:
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(batches())
            continue
        if step is not None:
            step(x, y)
        if n_warm < warmup:
            n_warm += 1
            if n_warm == warmup:
                start = time.perf_counter()
            continue
        seen += len(y)
        if time.perf_counter() - start >= seconds:
            return seen / (time.perf_counter() - start), seen


def make_step_model(kind: str, classes: int, size: int, device: str):
    """The network and optimiser a training step updates: a whole ResNet18 (SGD), or the GAttANet
    head on a frozen ResNet18 as `gatta-train head` trains it (the paper's recipe, Adam 3e-4)."""
    if kind == "backbone":
        import torchvision

        net = torchvision.models.resnet18(num_classes=classes).to(device, memory_format=torch.channels_last)
        return net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    from gatta.model.network import GattaNet
    from gatta.model.recipe import head_config
    from gatta.training.train import trainable_parameters

    net = GattaNet(head_config("resnet18", num_classes=classes, image_size=size))
    net.to(device, memory_format=torch.channels_last)
    params = trainable_parameters(net, "head")  # freezes the backbone
    net.train()  # the backbone stays in eval mode (GattaNet.train)
    return net, torch.optim.Adam(params, lr=3e-4)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="Image folder or plain .tar (default: a temporary JPEG tree).")
    parser.add_argument("--images", type=int, default=512, help="Pictures in the temporary tree.")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader worker processes.")
    parser.add_argument("--seconds", type=float, default=60.0, help="Total measuring time (three parts).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the step.")
    parser.add_argument("--step", choices=("backbone", "head"), default="backbone",
                        help="backbone: a ResNet18 SGD step; head: the GAttANet head step on a frozen ResNet18.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.data or photo_tree(Path(tmp) / "photos", args.images)
        data = stream_dataset(source, Preprocessing(args.image_size, "crop", 0.875), workers=args.workers)
        idx = torch.arange(len(data))
        epoch = iter(range(1, 10**9))

        def batches():
            return data.train_batches(idx, next(epoch), seed=0, batch_size=args.batch, device=device)[0]

        net, opt = make_step_model(args.step, len(data.class_names), args.image_size, device)

        def step(x, y):
            out = net(x.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(out if args.step == "backbone" else out.logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        synthetic = (torch.rand(args.batch, 3, args.image_size, args.image_size, device=device),
                     torch.randint(0, len(data.class_names), (args.batch,), device=device))
        part = args.seconds / 3
        loader, n_loader = rate(batches, part)
        alone, n_alone = rate(lambda: [synthetic] * 4, part, step)
        fed, n_fed = rate(batches, part, step)
    print(f"{len(data)} pictures ({'temporary JPEG tree, 500x375' if args.data is None else source}), "
          f"{args.image_size}px, batch {args.batch}, {args.workers} workers, device {device}, "
          f"{torch.get_num_threads()} torch threads\n")
    print(f"| {'what':<44} | {'images/s':>9} | {'images':>7} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 9}|")
    what = "ResNet18 step" if args.step == "backbone" else "GAttANet head step"
    for name, r, n in (("loader alone (read, decode, crop, flip)", loader, n_loader),
                       (f"{what} alone (synthetic batch)", alone, n_alone),
                       (f"loader feeding the {what}", fed, n_fed)):
        print(f"| {name:<44} | {r:>9.1f} | {n:>7} |")
    print(f"\nfed / step alone: {fed / alone:.2f}"
          + ("  (the step waits for data: add --workers)" if fed < 0.9 * alone else "  (the step is fed)"))
    if device == "cpu":
        print("on the CPU the workers and the step share the cores: a gap there is contention as much as starvation")


if __name__ == "__main__":
    main()
