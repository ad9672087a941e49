"""The one dataset type training and evaluation read: :class:`ImageSet`, whose pixels are either
held in memory (decoded once, training/data.py) or read and decoded per picture from a
:class:`~gatta.training.layouts.Listing` by DataLoader worker processes (training/streaming.py).

Either way a batch is the same: the epoch's order from :func:`~gatta.training.sampling.epoch_plan`,
the recipe's augmentation (training/augment.py) applied identically, and evaluation pictures
through the model's evaluation transform, the one decoder's (:mod:`gatta.decoder`). Held pixels
are that evaluation view: a ``random-resized-crop`` of a held set crops the held picture, a
streamed set crops the stored one, which is the same picture when the pictures are stored at
the input size (CIFAR at 32 px, Tiny-ImageNet at 64 px with ``crop_pct`` 1).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import psutil
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from gatta.decoder import Preprocessing, decode_image, open_image

from .augment import augment, check_augmentation, train_array
from .layouts import LayoutError, Listing
from .sampling import epoch_plan


class Pictures(Dataset):
    """Item i of an :class:`ImageSet` -> (uint8 [3, S, S], label). ``crop``: the
    ``random-resized-crop`` augmentation seeded by (seed, epoch, i), of the stored picture
    (streamed) or the held one; else the evaluation view. ``training``: read for a training
    step, whatever the augmentation."""

    def __init__(self, data: ImageSet, crop: bool = False, seed: int = 0, epoch: int = 0, training: bool = False):
        self.images, self.listing, self.labels = data.images, data.listing, data.labels
        self.prep = data.prep or Preprocessing(data.images.shape[-1])
        self.crop, self.seed, self.epoch, self.training = crop, seed, epoch, training

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.images is not None:
            arr = self.images[i].numpy()
            if self.crop:
                arr = train_array(Image.fromarray(arr.transpose(1, 2, 0)), self.prep, rng)
            return torch.from_numpy(np.ascontiguousarray(arr)), int(self.labels[i])
        data = self.listing.read(i)
        try:
            if self.crop:
                arr = open_image(data, then=lambda img: train_array(img, self.prep, rng))
            else:
                arr = decode_image(data, self.prep)
        except ValueError as exc:  # DecodeError: name the file
            raise LayoutError(f"{self.listing.source}: {self.listing.name(i)}: {exc}") from None
        return torch.from_numpy(arr), int(self.labels[i])


@dataclass
class ImageSet:
    """Pictures and their labels. ``images``: uint8 [N, 3, H, W] held in memory, or None when
    ``listing`` is read per picture (streamed) through ``prep``, the model's evaluation
    transform, by ``workers`` DataLoader processes."""

    images: torch.Tensor | None  # uint8 [N, 3, H, W]
    labels: torch.Tensor  # int64 [N]
    class_names: list[str]
    listing: Listing | None = field(default=None, repr=False)
    prep: Preprocessing | None = None
    workers: int = 2

    reader = Pictures  # the Dataset a loader reads pictures through (tests log what it reads)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def held(self) -> bool:
        """Whether the pixels are in memory (else each picture is read and decoded as needed)."""
        return self.images is not None

    def train_batches(self, indices: torch.Tensor, epoch: int, seed: int, batch_size: int, rank: int = 0,
                      world: int = 1, augmentation: str = "random-resized-crop", device="cpu",
                      generator: torch.Generator | None = None):
        """(iterator of (float [B, 3, S, S] in [0, 1], labels), number of steps): this rank's
        share of epoch ``epoch`` (sampling.epoch_plan) with ``augmentation`` (augment.py;
        ``shift-rotate-flip`` draws from ``generator`` after the order). ``fit`` passes the
        run's; the default is torchvision's ImageNet recipe, what scripts/bench_data.py times."""
        check_augmentation(augmentation)
        g = generator or torch.Generator()
        plan = epoch_plan(indices, epoch, seed, batch_size, rank, world, g)
        if self.held and augmentation != "random-resized-crop":
            out = ((self.images[idx].to(device, non_blocking=True), self.labels[idx].to(device)) for idx in plan)
        else:
            pictures = self.reader(self, augmentation == "random-resized-crop", seed, epoch, training=True)
            out = self._loader(pictures, [idx.tolist() for idx in plan], device)
        if augmentation == "shift-rotate-flip":
            return ((augment(x.float().div_(255), g), y) for x, y in out), len(plan)
        return ((x.float().div_(255), y) for x, y in out), len(plan)

    def eval_batches(self, indices: torch.Tensor, batch_size: int, device="cpu"):
        """(float [B, 3, S, S] in [0, 1], labels) of pictures ``indices`` in order, through the
        model's evaluation transform."""
        for x, y in self._eval_uint8(indices, batch_size, device):
            yield x.float().div_(255), y

    def pictures(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 [n, 3, S, S]: pictures ``indices`` through the evaluation transform."""
        return torch.cat([x for x, _ in self._eval_uint8(indices, 256, "cpu")])

    def _eval_uint8(self, indices: torch.Tensor, batch_size: int, device):
        chunks = [indices[k:k + batch_size] for k in range(0, len(indices), batch_size)]
        if self.held:
            return ((self.images[c].to(device, non_blocking=True), self.labels[c].to(device)) for c in chunks)
        return self._loader(self.reader(self), [c.tolist() for c in chunks], device)

    def _loader(self, dataset: Dataset, batches, device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # its own generator: the loader's worker seeds must not draw from the global RNG, which
        # drives dropout (and --resume restores); augmentation is seeded per picture anyway.
        # Held pixels are read in this process: a worker would only copy them.
        workers = 0 if self.held else self.workers
        start = worker_start_method() if workers else None
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                            pin_memory=torch.device(device).type == "cuda", generator=torch.Generator(),
                            prefetch_factor=4 if workers else None, multiprocessing_context=start,
                            worker_init_fn=functools.partial(follow_rank, os.getpid()) if start else None)
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


# -- DataLoader workers -------------------------------------------------------------------
def worker_start_method() -> multiprocessing.context.BaseContext | None:
    """How DataLoader workers start: forked (PyTorch's default on Linux) in one process; from a
    forkserver under a process group. A rank holds the collective backend's threads (three beside
    the main one under gloo), and forking a process with threads can leave the child holding
    a lock no thread will release (Python 3.12 warns of it; 3.14 makes forkserver its default).
    A two-rank run with forked workers hung once in its first epoch (a hundred more runs did not
    reproduce it). Each worker imports the rank's main module: a script run by torchrun needs
    the ``if __name__ == "__main__":`` guard (``gatta-train`` and ``-m gatta.training.cli``
    have it)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    forkserver = multiprocessing.get_context("forkserver")
    # torch imported once, in the forkserver, not again in each epoch's workers. (Python 3.11
    # never preloads the main module, whatever this list says; each worker imports it.)
    forkserver.set_forkserver_preload(["torch", __name__])
    return forkserver


def follow_rank(rank_pid: int, worker_id: int, every_s: float = 1.0) -> None:
    """A worker_init_fn for forkserver workers: end the worker once the rank that reads it is
    gone. PyTorch's own watchdog watches the worker's parent, which is now the forkserver, and
    the forkserver outlives a rank killed outright (SIGKILL, the OOM killer) while its workers
    hold it open: without this, such a rank's workers and forkserver ran on."""
    try:
        rank = psutil.Process(rank_pid)
    except psutil.NoSuchProcess:
        os._exit(1)

    def watch():
        # a killed rank whose parent has not reaped it yet is a zombie: gone, for this purpose
        try:
            while rank.is_running() and rank.status() != psutil.STATUS_ZOMBIE:
                time.sleep(every_s)
        except psutil.NoSuchProcess:
            pass
        os._exit(1)
    threading.Thread(target=watch, name="follow-rank", daemon=True).start()
