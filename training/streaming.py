"""Datasets too large for memory, streamed: each item is one file read and decoded by a
DataLoader worker process, never the whole set at once.

- :class:`StreamingSet`: a :class:`~gatta.training.layouts.Listing` (ImageFolder, Tiny-ImageNet,
  ImageNet, or a plain .tar of one) with the model's preprocessing. Training pictures get the
  standard ImageNet augmentation (a random-resized crop to the input size, then a horizontal
  flip, as torchvision's references/classification); validation pictures the model's
  evaluation transform through the one decoder (:mod:`gatta.decoder`), exactly as the client
  and the server see them.
- each epoch's batches come from :func:`~gatta.training.sampling.epoch_plan` (training/sampling.py),
  as in memory; each picture's augmentation is seeded by (seed, epoch, picture), so a run
  resumed at an epoch boundary sees the crops an uninterrupted run would and the result does
  not depend on the number of workers.
- :func:`choose_mode`: in memory (decoded once, training/data.py) or streamed, by a flag, by
  the augmentation (ResNet training streams) or by the decoded size.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import psutil
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from gatta.decoder import INTERPOLATIONS, Preprocessing, decode_image, open_image

from .layouts import STREAMABLE, LayoutError, Listing, list_dataset, source_kind
from .sampling import ShardedBatches

DATA_MODES = ("auto", "memory", "stream")
# auto streams a dataset whose pictures, decoded at the model's input size as uint8, would take
# more than this (4.3 GB): CIFAR-10's 50,000 training pictures at 32 px (0.15 GB) and
# Tiny-ImageNet's 100,000 at 64 px (1.2 GB) stay in memory, ImageNet-1k's 1,281,167 at 224 px
# (193 GB) stream. (ResNet training streams whatever the size: see choose_mode.)
MEMORY_LIMIT_BYTES = 4 * 2**30
RRC_SCALE = (0.08, 1.0)  # torchvision's RandomResizedCrop defaults
RRC_RATIO = (3 / 4, 4 / 3)


def choose_mode(source: str | Path, input_size: int, mode: str = "auto", split: str = "train",
                random_crop: bool = False) -> tuple[str, Listing | None]:
    """(``memory`` or ``stream``, the listing of ``split`` made to decide it, or None): hand the
    listing on, so the set is listed once. CIFAR pickles and .tar.gz files are read whole.
    ``random_crop``: a run that trains on the random-resized crop + flip (ResNets), which only
    the streamed loader does, from the stored picture: ``auto`` streams it whenever it can."""
    if mode not in DATA_MODES:
        raise ValueError(f"data mode {mode!r}: choose one of {', '.join(DATA_MODES)}")
    streamable = source_kind(source) in STREAMABLE
    if mode == "stream" and not streamable:
        raise LayoutError(f"{source}: --data-mode stream reads an image folder or a plain .tar; "
                          "use --data-mode memory for CIFAR pickles and .tar.gz files")
    if mode != "auto":
        return mode, None
    if not streamable:
        return "memory", None
    if random_crop:
        return "stream", None
    listing = list_dataset(source, split)
    decoded = len(listing) * 3 * input_size * input_size
    return ("stream" if decoded > MEMORY_LIMIT_BYTES else "memory"), listing


# -- transforms -------------------------------------------------------------------------------
def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale=RRC_SCALE, ratio=RRC_RATIO) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` drawn from ``rng``: (left, top, w, h)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height  # ten misses: the centre crop, aspect clamped into range
    w, h = width, height
    if in_ratio < min(ratio):
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        w = int(round(h * max(ratio)))
    return (width - w) // 2, (height - h) // 2, w, h


def train_array(img, prep: Preprocessing, rng: np.random.Generator) -> np.ndarray:
    """An upright RGB PIL image -> uint8 [3, S, S]: random-resized crop to the input size with
    the model's interpolation, then a horizontal flip with probability 1/2."""
    left, top, w, h = random_resized_crop_box(img.width, img.height, rng)
    size = prep.input_size
    img = img.resize((size, size), INTERPOLATIONS[prep.interpolation], box=(left, top, left + w, top + h))
    arr = np.asarray(img, dtype=np.uint8)
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    return arr.transpose(2, 0, 1).copy()


class Pictures(Dataset):
    """Item i -> (uint8 [3, S, S], label): one file read and decoded. ``augment``: the training
    transform, seeded by (seed, epoch, i); else the model's evaluation transform."""

    def __init__(self, listing: Listing, prep: Preprocessing, augment: bool = False, seed: int = 0):
        self.listing, self.prep, self.augment, self.seed, self.epoch = listing, prep, augment, seed, 0

    def __len__(self) -> int:
        return len(self.listing)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        data = self.listing.read(i)
        try:
            if self.augment:
                rng = np.random.default_rng([self.seed, self.epoch, i])
                arr = open_image(data, then=lambda img: train_array(img, self.prep, rng))
            else:
                arr = decode_image(data, self.prep)
        except ValueError as exc:  # DecodeError: name the file
            raise LayoutError(f"{self.listing.source}: {self.listing.name(i)}: {exc}") from None
        return torch.from_numpy(arr), int(self.listing.labels[i])


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


# -- the dataset the training loop sees -------------------------------------------------------
class StreamingSet:
    """A listed dataset decoded as it is read, by ``workers`` DataLoader processes. Has the
    ``labels`` and ``class_names`` of an in-memory ImageSet, so splits and checks are shared."""

    pictures = Pictures  # the Dataset each loader reads through

    def __init__(self, listing: Listing, prep: Preprocessing, workers: int = 2):
        self.listing, self.prep, self.workers = listing, prep, workers
        self.labels, self.class_names, self.class_ids = listing.labels, listing.class_names, listing.class_ids

    def __len__(self) -> int:
        return len(self.listing)

    def _loader(self, dataset: Dataset, batches, device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # its own generator: the loader's worker seeds must not draw from the global RNG, which
        # drives dropout (and --resume restores); augmentation is seeded per picture anyway
        start = worker_start_method() if self.workers else None
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=self.workers,
                            pin_memory=torch.device(device).type == "cuda", generator=torch.Generator(),
                            prefetch_factor=4 if self.workers else None, multiprocessing_context=start,
                            worker_init_fn=functools.partial(follow_rank, os.getpid()) if start else None)
        for x, y in loader:
            yield x.to(device, non_blocking=True).float().div_(255), y.to(device, non_blocking=True)

    def train_batches(self, indices: torch.Tensor, epoch: int, seed: int, batch_size: int, rank: int = 0,
                      world: int = 1, augmentation: bool = True, device="cpu"):
        """(iterator of (float [B, 3, S, S] in [0, 1], labels), number of steps): this rank's
        share of epoch ``epoch``."""
        sampler = ShardedBatches(indices, batch_size, rank, world, seed)
        sampler.set_epoch(epoch)
        pictures = self.pictures(self.listing, self.prep, augment=augmentation, seed=seed)
        pictures.epoch = epoch
        return self._loader(pictures, sampler, device), len(sampler)

    def eval_batches(self, indices: torch.Tensor, batch_size: int, device="cpu"):
        """Pictures ``indices`` in order, through the model's evaluation transform."""
        chunks = [indices[k:k + batch_size].tolist() for k in range(0, len(indices), batch_size)]
        return self._loader(self.pictures(self.listing, self.prep), chunks, device)

    def sample(self, indices: torch.Tensor, n: int = 1000, seed: int = 0) -> torch.Tensor:
        """uint8 [n, 3, S, S]: a seeded sample through the evaluation transform (channel stats)."""
        g = torch.Generator().manual_seed(seed)
        pick = indices[torch.randperm(len(indices), generator=g)[:n]]
        return torch.cat([x.mul(255).round().to(torch.uint8) for x, _ in self.eval_batches(pick, 256)])


def stream_dataset(source: str | Path, prep: Preprocessing, split: str = "train", workers: int = 2,
                   listing: Listing | None = None) -> StreamingSet:
    """A folder or plain .tar as a :class:`StreamingSet` (layouts: training/layouts.py);
    ``listing``: its listing of ``split`` when already made (choose_mode)."""
    return StreamingSet(listing or list_dataset(source, split), prep, workers)
