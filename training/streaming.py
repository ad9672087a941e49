"""Datasets too large for memory, streamed: each picture is one file read and decoded by a
DataLoader worker process when a batch needs it, never the whole set at once.

- :func:`stream_dataset`: a :class:`~gatta.training.layouts.Listing` (ImageFolder,
  Tiny-ImageNet, ImageNet, or a plain .tar of one) as the one dataset type,
  :class:`~gatta.training.dataset.ImageSet`, with no pixels held: batches, the recipe's
  augmentation and the evaluation transform are those of a held set (training/dataset.py).
- :func:`choose_mode`: in memory (decoded once, training/data.py) or streamed, by a flag, by
  the augmentation (a random-resized crop streams, to crop the stored picture) or by the
  decoded size.
"""

from __future__ import annotations

from pathlib import Path

from gatta.decoder import Preprocessing

from .dataset import ImageSet
from .layouts import STREAMABLE, LayoutError, Listing, list_dataset, source_kind

DATA_MODES = ("auto", "memory", "stream")
# auto streams a dataset whose pictures, decoded at the model's input size as uint8, would take
# more than this (4.3 GB): CIFAR-10's 50,000 training pictures at 32 px (0.15 GB) and
# Tiny-ImageNet's 100,000 at 64 px (1.2 GB) stay in memory, ImageNet-1k's 1,281,167 at 224 px
# (193 GB) stream. (ResNet training streams whatever the size: see choose_mode.)
MEMORY_LIMIT_BYTES = 4 * 2**30


def choose_mode(source: str | Path, input_size: int, mode: str = "auto", split: str = "train",
                random_crop: bool = False) -> tuple[str, Listing | None]:
    """(``memory`` or ``stream``, the listing of ``split`` made to decide it, or None): hand the
    listing on, so the set is listed once. CIFAR pickles and .tar.gz files are read whole.
    ``random_crop``: a run that trains on the random-resized crop + flip (ResNets): ``auto``
    streams it whenever it can, so the crop is of the stored picture, not of the held
    evaluation view."""
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


def stream_dataset(source: str | Path, prep: Preprocessing, split: str = "train", workers: int = 2,
                   listing: Listing | None = None) -> ImageSet:
    """A folder or plain .tar as an :class:`~gatta.training.dataset.ImageSet` read per picture
    (layouts: training/layouts.py); ``listing``: its listing of ``split`` when already made
    (choose_mode)."""
    listing = listing or list_dataset(source, split)
    return ImageSet(None, listing.labels, listing.class_names, listing, prep, workers)
