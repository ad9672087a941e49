"""Datasets decoded once into memory as uint8 tensors, :func:`load_dataset` (in memory or
streamed, one :class:`~gatta.training.dataset.ImageSet` either way), seeded splits.

Supported sources (``load_images``):
- CIFAR-10/100 in the official python-pickle layout (``cifar-10-batches-py/``,
  ``cifar-100-python/``), as users download them;
- every layout training/layouts.py lists, by the same rules as the streamed path: ImageFolder
  trees ``<root>/<class>/*.jpg`` (with or without leading folders, e.g. the CIFAR-10 JPEG copy
  or an ImageNet subset resized to ``image_size``), the Tiny-ImageNet and ImageNet layouts (a
  ``train/`` folder beside ``val/``; ``split`` ``test``: the official ``val/``), as a folder, a
  plain ``.tar`` or a ``.tar.gz`` (read whole, without extracting).
Decoded arrays are cached under ``$GATTA_CACHE`` (default ``~/.cache/gattanet``). Sets too
large to decode into memory stream instead (training/streaming.py).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gatta.decoder import DecodeError, Preprocessing, decode_image

from .dataset import ImageSet
from .layouts import LayoutError, Listing, cifar_pickles, list_dataset, read_compressed, source_kind
from .streaming import choose_mode, stream_dataset


class DataError(ValueError):
    """A dataset path or content that cannot be used."""


def cache_dir() -> Path:
    return Path(os.environ.get("GATTA_CACHE", Path.home() / ".cache" / "gattanet"))


# Part of the cache key of every source training/layouts.py lists: raise it when the listing
# rules change, so arrays decoded under the old rules are not reused (2: folders and .tar.gz
# files listed by layouts.py, as streaming lists them).
LISTING_RULES = 2
# Arrays cached before names had a version part (images-<16 hex>.npz): no loader reads them.
_LEGACY_NAME = re.compile(r"images-[0-9a-f]{16}\.npz")


# -- loading ------------------------------------------------------------------------------
def load_dataset(spec: str, image_size: int | Preprocessing | None, workers: int = 2, mode: str = "auto",
                 split: str = "train", random_crop: bool = False) -> ImageSet:
    """A dataset path, or ``synthetic:N[:classes]`` for generated smoke-test data, as an
    :class:`ImageSet` held in memory or streamed (``mode``: memory, stream or auto, see
    streaming.choose_mode); batches, augmentation and evaluation views are the same either way.
    ``image_size``: the model's preprocessing, or an int for a squash to that square.
    ``split``: ``train``, or ``test`` (the CIFAR test batch; the official ``val/`` of
    Tiny-ImageNet and ImageNet). ``random_crop``: the run trains on the random-resized crop +
    flip, which auto streams so that it crops the stored picture, not the held evaluation view.

    >>> load_dataset("synthetic:64", 16).images.shape
    torch.Size([64, 3, 16, 16])
    """
    prep = Preprocessing(image_size) if isinstance(image_size, int) else image_size
    if source_kind(spec) == "synthetic":
        if split != "train":
            raise DataError(f"{spec}: no {split} split in it (synthetic data is one set; "
                            "--split val scores the checkpoint's validation split)")
        parts = spec.split(":")
        n = int(parts[1]) if len(parts) > 1 else 512
        classes = int(parts[2]) if len(parts) > 2 else 4
        return replace(synthetic_images(n, classes, prep.input_size if prep else 32), prep=prep)
    if prep is None:
        return load_images(spec, prep, split=split, workers=workers)
    folder = "val" if split == "test" else split  # the split layouts' held-out set is their val/
    mode, listing = choose_mode(spec, prep.input_size, mode, folder, random_crop)  # listed once: handed on
    if mode == "stream":
        return stream_dataset(spec, prep, folder, workers, listing)
    return load_images(spec, prep, split=split, workers=workers, listing=listing)


def _decoding_key(image_size: int | Preprocessing | None) -> str:
    """What of the preprocessing changes decoded pixels; a bilinear squash keeps the key that
    a plain image size always had, so caches written before the record stay valid."""
    if not isinstance(image_size, Preprocessing):
        return str(image_size)
    if image_size.resize == "squash" and image_size.interpolation == "bilinear":
        return str(image_size.input_size)
    return f"{image_size.input_size}:{image_size.resize}:{image_size.crop_pct}:{image_size.interpolation}"


def load_images(path: str | Path, image_size: int | Preprocessing | None = None, split: str = "train",
                workers: int = 2, listing: Listing | None = None) -> ImageSet:
    """Load a dataset into memory (see module doc for layouts). ``image_size``: the model's
    preprocessing (``GattaConfig.preprocessing``: every picture decoded as evaluation sees it),
    an int to squash to that square, or None to keep the stored size. ``split``: ``train`` or
    ``test`` (CIFAR's test batch, the official ``val/``). ``listing``: the source's listing of
    that split when already made (streaming.choose_mode), so it is not listed again."""
    path = Path(path)
    prep = Preprocessing(image_size) if isinstance(image_size, int) else image_size  # held: the crop's interpolation
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    stat = path.stat()
    rules = "" if source_kind(path) == "cifar-pickles" else f"|listed{LISTING_RULES}"
    # The name is (what is decoded, how)-(which version of the file): a source whose mtime changed
    # replaces its old array instead of adding a copy beside it (a 154 MB one per CIFAR-10
    # copy, and a dataset re-copied or re-extracted gets a new mtime each time).
    what = hashlib.sha1(f"{path.resolve()}|{_decoding_key(image_size)}|{split}{rules}".encode()).hexdigest()[:16]
    version = hashlib.sha1(str(stat.st_mtime_ns).encode()).hexdigest()[:8]
    cached = cache_dir() / f"images-{what}-{version}.npz"
    try:
        with np.load(cached, allow_pickle=False) as z:
            return ImageSet(torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]),
                            [str(c) for c in z["class_names"]], prep=prep)
    except FileNotFoundError:  # not cached yet, or another process pruned it
        pass
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError):  # half-written or damaged: decode again
        pass
    data = replace(_load_uncached(path, image_size, split, workers, listing), prep=prep)
    cached.parent.mkdir(parents=True, exist_ok=True)
    # One temporary file per process: ranks that decode the same source at once each write
    # their own and the last rename wins (same contents).
    tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, images=data.images.numpy(), labels=data.labels.numpy(),
             class_names=np.array(data.class_names))
    tmp.replace(cached)
    for stale in cached.parent.glob("images-*.npz"):
        if stale.name.endswith(".tmp.npz") or stale == cached:
            continue
        if stale.name.startswith(f"images-{what}-") or _LEGACY_NAME.fullmatch(stale.name):
            stale.unlink(missing_ok=True)  # an older version of this source; or named before versions
    return data


def _load_uncached(path: Path, image_size, split, workers, listing=None) -> ImageSet:
    kind = source_kind(path)
    if kind == "cifar-pickles":
        pickles = cifar_pickles(path)
        load = _load_cifar10_pickle if (pickles / "data_batch_1").exists() else _load_cifar100_pickle
        return load(pickles, split)
    if kind not in ("folder", "tar", "tar.gz"):
        raise DataError(f"{path}: not a directory, CIFAR pickle folder, .tar or .tar.gz of images")
    try:  # the streamed path's lister, so both modes see the same pictures and classes
        read = read_compressed if kind == "tar.gz" else list_dataset
        listing = listing or read(path, "val" if split == "test" else split)
    except LayoutError as exc:
        raise DataError(str(exc)) from None
    items = [(listing.class_ids[label], listing.read(i)) for i, label in enumerate(listing.labels.tolist())]
    data = _assemble(items, image_size, workers, path, listing.class_ids)
    return ImageSet(data.images, data.labels, listing.class_names)


def _unpickle(file: Path) -> dict:
    with open(file, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def _load_cifar10_pickle(root: Path, split: str) -> ImageSet:
    files = [root / f"data_batch_{i}" for i in range(1, 6)] if split == "train" else [root / "test_batch"]
    xs, ys = [], []
    for f in files:
        batch = _unpickle(f)
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(batch["labels"])
    names = _unpickle(root / "batches.meta")["label_names"]
    return ImageSet(torch.from_numpy(np.concatenate(xs)), torch.tensor(ys), list(names))


def _load_cifar100_pickle(root: Path, split: str) -> ImageSet:
    batch = _unpickle(root / ("train" if split == "train" else "test"))
    x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    names = _unpickle(root / "meta")["fine_label_names"]
    return ImageSet(torch.from_numpy(x), torch.tensor(batch["fine_labels"]), list(names))


def _assemble(items: list[tuple[str, bytes]], image_size, workers, origin, classes=None) -> ImageSet:
    """items: (class name, encoded bytes) pairs; ``classes``: every class in label order
    (default: those present, sorted)."""
    if not items:
        raise DataError(f"{origin}: no images found (expected <root>/<class>/*.jpg)")
    class_names = classes or sorted({c for c, _ in items})
    index = {c: i for i, c in enumerate(class_names)}
    def decode(item):
        try:
            return decode_image(item[1], image_size)
        except DecodeError as exc:
            raise DataError(f"{origin}: an image of class {item[0]!r}: {exc}") from None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        arrays = list(pool.map(decode, items, chunksize=256))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"{origin}: images differ in size {sorted(shapes)[:3]}; pass --image-size")
    labels = torch.tensor([index[c] for c, _ in items])
    return ImageSet(torch.from_numpy(np.stack(arrays)), labels, class_names)


# -- synthetic data for tests and smoke runs ---------------------------------------------------
def synthetic_images(n: int, num_classes: int = 4, image_size: int = 32, seed: int = 0) -> ImageSet:
    """Learnable toy data: each class is a bright square at its own place and colour, on noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    images = torch.rand(n, 3, image_size, image_size, generator=g) * 0.4
    side = image_size // 3
    for c in range(num_classes):
        idx = labels == c
        y = (c * side // 2) % (image_size - side)
        x = (c * side) % (image_size - side)
        colour = torch.tensor([(c % 3 == 0), (c % 3 == 1), (c % 3 == 2)], dtype=torch.float)
        images[idx, :, y : y + side, x : x + side] = 0.3 + 0.6 * colour.view(3, 1, 1)
    return ImageSet((images * 255).round().to(torch.uint8), labels,
                    [f"shape_{c}" for c in range(num_classes)])


# -- splits, statistics, batches ----------------------------------------------------------------
def stratified_split(labels: torch.Tensor, val_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified hold-out: ``val_size`` images, classes in proportion. Returns
    sorted (train_indices, val_indices)."""
    if not 0 < val_size < len(labels):
        raise DataError(f"validation size {val_size} must be between 0 and {len(labels)}")
    g = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    val = []
    for i, c in enumerate(classes):
        members = (labels == c).nonzero().flatten()
        take = round(val_size * len(members) / len(labels))
        val.append(members[torch.randperm(len(members), generator=g)[:take]])
    val_idx = torch.cat(val).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[val_idx] = False
    return mask.nonzero().flatten(), val_idx


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on the [0, 1] pixel scale."""
    x = images.float().div_(255)
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).tolist()
