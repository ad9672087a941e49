"""Where a dataset's pictures are and what class each one is, listed once without decoding.

Layouts (a folder, or a plain ``.tar`` of one, with or without a leading folder):

- ImageFolder: ``<root>/<class>/*.jpg``;
- split layouts, recognised by a ``train/`` folder: Tiny-ImageNet
  (``train/<wnid>/images/<wnid>_<n>.JPEG``, ``val/images/*.JPEG`` labelled by
  ``val/val_annotations.txt``: file, wnid, box, tab-separated) and ImageNet
  (``train/<wnid>/*.JPEG``; ``val/`` either in class folders or flat and labelled by
  ``val/val_annotations.txt`` or Kaggle's ``LOC_val_solution.csv``: ImageId, "wnid box ...").
  ``wnids.txt`` fixes the classes, ``words.txt`` (wnid, tab, "name, synonym, ...") gives
  readable names; the ids are kept beside them.

A :class:`Listing` holds one entry per picture (where to read it, its label), never pixels:
the streaming loader reads and decodes one file per item (training/streaming.py). A ``.tar`` is
indexed once (each member's data offset and size); every process then reads members through
its own file handle, so DataLoader workers never share a file position. A ``.tar.gz`` cannot be
read at random: :func:`read_compressed` applies the same rules to it and holds its pictures'
bytes, for the in-memory path (training/data.py), which lists every source here.
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gatta.decoder import IMAGE_SUFFIXES
from gatta.model.checkpoint import is_synthetic_data

ANNOTATION_FILES = ("val_annotations.txt", "LOC_val_solution.csv")
SYNSET_FILE = "LOC_synset_mapping.txt"
TEXT_FILES = ("wnids.txt", "words.txt", SYNSET_FILE, *ANNOTATION_FILES)  # read while listing


class LayoutError(ValueError):
    """A dataset whose files do not form a known layout; the message names the file."""


@dataclass
class Listing:
    source: Path  # folder or .tar
    files: list[str]  # path under the folder, or tar member name
    labels: torch.Tensor  # int64 [N]
    class_ids: list[str]  # e.g. wnids; folder names for an ImageFolder
    class_names: list[str]  # readable (words.txt), else the ids
    tar_spans: np.ndarray | None = None  # [N, 2] member data offset and size
    blobs: list[bytes] | None = field(default=None, repr=False)  # a .tar.gz's pictures, held
    _handle: object = field(default=None, repr=False, compare=False)
    _pid: int = field(default=-1, repr=False, compare=False)

    def __post_init__(self):
        # Workers read names from one bytes buffer: touching a million Python strings from
        # forked workers would copy their pages into every worker (refcount writes).
        self._names = np.array([f.encode() for f in self.files], dtype=np.bytes_)

    def __len__(self) -> int:
        return len(self._names)

    def name(self, i: int) -> str:
        """Picture ``i``'s path under the folder, or its tar member name."""
        return self._names[i].decode()

    def read(self, i: int) -> bytes:
        """The encoded bytes of picture ``i``."""
        if self.blobs is not None:
            return self.blobs[i]
        if self.tar_spans is None:
            return (self.source / self._names[i].decode()).read_bytes()
        if self._pid != os.getpid():  # a forked worker must not share its parent's file position
            self._handle, self._pid = open(self.source, "rb"), os.getpid()
        offset, size = self.tar_spans[i]
        self._handle.seek(int(offset))
        return self._handle.read(int(size))

    def __getstate__(self):
        # what a worker started from a forkserver gets: its own file handle, and the names once
        # (the bytes buffer, 45 MB pickled for ImageNet-1k's 1.28 M, not also the list of
        # strings, another 48 MB, every worker, every epoch). One that crossed a process reads
        # names with name(i).
        return {**self.__dict__, "files": None, "_handle": None, "_pid": -1}


def is_plain_tar(path: Path) -> bool:
    return path.is_file() and path.name.endswith(".tar")


def cifar_pickles(path: Path) -> Path | None:
    """The folder holding CIFAR-10/100's python pickles, when ``path`` is or holds one."""
    if not path.is_dir():
        return None
    for name in ("cifar-10-batches-py", "cifar-100-python"):
        if (path / name).is_dir():
            path = path / name
    cifar10, cifar100 = (path / "data_batch_1").exists(), (path / "meta").exists() and (path / "train").is_file()
    return path if cifar10 or cifar100 else None


SOURCE_KINDS = ("synthetic", "cifar-pickles", "folder", "tar", "tar.gz")
STREAMABLE = ("folder", "tar")  # read one picture at a time; the others are read whole


def source_kind(source: str | Path) -> str | None:
    """What a ``--data`` value is, by the one rule every loader follows: ``synthetic``
    (``synthetic:N[:classes]``), ``cifar-pickles`` (CIFAR-10/100's python layout, or a folder
    holding it), ``folder``, ``tar`` (plain), ``tar.gz``; None for anything else."""
    if is_synthetic_data(source):
        return "synthetic"
    path = Path(source)
    if cifar_pickles(path) is not None:
        return "cifar-pickles"
    if path.is_dir():
        return "folder"
    if is_plain_tar(path):
        return "tar"
    if is_compressed_tar(path):
        return "tar.gz"
    return None


def _scan(source: Path) -> tuple[list[str], dict[str, tuple[int, int]] | None, dict[str, bytes]]:
    """(file names, tar spans or None, small text files by name) of a folder or plain .tar."""
    texts: dict[str, bytes] = {}
    if source.is_dir():
        names = []
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            rel = Path(dirpath).relative_to(source)
            for f in sorted(filenames):
                name = (rel / f).as_posix()
                names.append(name)
                if f in TEXT_FILES:
                    texts[name] = (source / name).read_bytes()
        return names, None, texts
    if not is_plain_tar(source):
        raise LayoutError(f"{source}: streaming reads a folder or a plain .tar (a .tar.gz cannot be read "
                          "at random: gunzip it, or use --data-mode memory)")
    spans = {}
    with tarfile.open(source, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            spans[member.name] = (member.offset_data, member.size)
            if Path(member.name).name in TEXT_FILES:
                texts[member.name] = tar.extractfile(member).read()
    return list(spans), spans, texts


def _split_base(images: list[str]) -> str | None:
    """The folder holding ``train/`` (``""`` at the top), or None: not a split layout."""
    for name in images:
        parts = name.split("/")
        if "train" in parts[:-1]:
            return "/".join(parts[: parts.index("train")] + [""])
    return None


def _annotations(texts: dict[str, bytes], split_dir: str) -> dict[str, str] | None:
    """Validation file name -> class id, from the split's annotations file."""
    kaggle = [n for n in texts if n.endswith(ANNOTATION_FILES[1])]
    for name in [split_dir + ANNOTATION_FILES[0]] * (split_dir + ANNOTATION_FILES[0] in texts) + kaggle[:1]:
        text = texts[name].decode("utf-8")
        if name.endswith(".txt"):  # Tiny-ImageNet: file \t wnid \t x0 \t y0 \t x1 \t y1
            rows = [line.split("\t") for line in text.splitlines() if line.strip()]
            return {r[0]: r[1].strip() for r in rows}
        rows = list(csv.reader(io.StringIO(text)))[1:]  # Kaggle: ImageId, "wnid x0 y0 x1 y1 ..."
        return {r[0] + ".JPEG": r[1].split()[0] for r in rows if len(r) > 1 and r[1].strip()}
    return None


def _readable(ids: list[str], texts: dict[str, bytes], base: str) -> list[str]:
    """The first name words.txt (Tiny-ImageNet: wnid, tab, names) or LOC_synset_mapping.txt
    (Kaggle's ImageNet: wnid, space, names) gives each id; an id whose first name another id
    also has keeps its id beside it (ImageNet has two cranes). Without either: the ids."""
    words = {}
    for name in (base + "words.txt", *[n for n in texts if n.endswith(SYNSET_FILE)][:1]):
        for line in texts.get(name, b"").decode("utf-8").splitlines():
            wnid, _, names = line.replace("\t", " ", 1).partition(" ")
            if names.strip():
                words.setdefault(wnid.strip(), names.split(",")[0].strip())
    first = [words.get(i, i) for i in ids]
    return [n if first.count(n) == 1 else f"{n} ({i})" for n, i in zip(first, ids)]


def list_dataset(source: str | Path, split: str = "train") -> Listing:
    """Index a folder or plain .tar (see module doc). ``split``: ``train`` or ``val`` for the
    split layouts (their ``val/`` is the test set; an ImageFolder has only its one set)."""
    source = Path(source)
    if not source.exists():
        raise LayoutError(f"data path {source} does not exist")
    names, spans, texts = _scan(source)
    files, labels, ids, readable = _label(source, names, texts, split)
    return Listing(source, files, labels, ids, readable,
                   None if spans is None else np.array([spans[n] for n in files], dtype=np.int64).reshape(-1, 2))


def is_compressed_tar(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.gz", ".tgz"))


def read_compressed(source: str | Path, split: str = "train") -> Listing:
    """A .tar.gz read whole, listed by the same rules, its pictures' bytes held in the listing.
    Within a class the pictures keep the archive's order, not the names': the order a .tar.gz
    has always had in memory, on which the shipped CIFAR-10 model's validation split was drawn."""
    source = Path(source)
    blobs, texts = {}, {}
    with tarfile.open(source, "r:*") as tar:
        for member in tar:
            name = Path(member.name)
            if member.isfile() and name.suffix.lower() in IMAGE_SUFFIXES:
                blobs[member.name] = tar.extractfile(member).read()
            elif member.isfile() and name.name in TEXT_FILES:
                texts[member.name] = tar.extractfile(member).read()
    files, labels, ids, readable = _label(source, list(blobs), texts, split, by_name=False)
    return Listing(source, files, labels, ids, readable, blobs=[blobs[f] for f in files])


def _label(source: Path, names: list[str], texts: dict[str, bytes], split: str,
           by_name: bool = True) -> tuple[list[str], torch.Tensor, list[str], list[str]]:
    """The layout rules on a source's file names: (its pictures in label order, their labels,
    class ids, readable names). ``by_name``: within a class by name, else in the order given."""
    images = [n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise LayoutError(f"{source}: no images found (expected <root>/<class>/*.jpg or a train/ folder)")
    base = _split_base(images)
    if base is None and split != "train":
        raise LayoutError(f"{source}: no test split in it (an image folder without a train/ folder is one "
                          "set; a test set is a val/ folder beside train/)")
    if base is None:  # ImageFolder: leading folders every picture shares are not classes
        lead, rel = "", images
        while all(r.count("/") >= 2 for r in rel) and len({r.split("/")[0] for r in rel}) == 1:
            top = rel[0].split("/")[0] + "/"
            lead, rel = lead + top, [r[len(top):] for r in rel]
        pairs = [(r.split("/")[0], lead + r) for r in rel if "/" in r]
        ids, base = sorted({c for c, _ in pairs}), lead
    else:
        split_dir = base + split + "/"
        in_split = [n for n in images if n.startswith(split_dir)]
        if not in_split:
            raise LayoutError(f"{source}: no test split in it (no images under {split_dir})")
        notes = None if split == "train" else _annotations(texts, split_dir)
        if notes is not None:
            missing = [n for n in in_split if n.rsplit("/", 1)[-1] not in notes]
            if missing:
                raise LayoutError(f"{source}: {missing[0]} has no row in {split_dir}'s annotations file")
            pairs = [(notes[n.rsplit("/", 1)[-1]], n) for n in in_split]
        else:
            flat = [n for n in in_split if "/" not in n[len(split_dir):]]
            if flat:
                raise LayoutError(f"{source}: {flat[0]} is in no class folder and {split_dir} has no "
                                  f"annotations file ({' or '.join(ANNOTATION_FILES)})")
            pairs = [(n[len(split_dir):].split("/")[0], n) for n in in_split]
        train_classes = {n[len(base) + 6:].split("/")[0] for n in images if n.startswith(base + "train/")}
        ids = sorted(set(texts[base + "wnids.txt"].decode().split()) if base + "wnids.txt" in texts
                     else train_classes or {c for c, _ in pairs})
    index = {c: i for i, c in enumerate(ids)}
    unknown = sorted({c for c, _ in pairs} - set(index))
    if unknown:
        raise LayoutError(f"{source}: class {unknown[0]!r} of the {split} images is not among the {len(ids)} classes")
    pairs.sort(key=(lambda p: (index[p[0]], p[1])) if by_name else (lambda p: index[p[0]]))  # sort is stable
    return ([n for _, n in pairs], torch.tensor([index[c] for c, _ in pairs], dtype=torch.int64), ids,
            _readable(ids, texts, base))
