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
its own file handle, so DataLoader workers never share a file position.
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

ANNOTATION_FILES = ("val_annotations.txt", "LOC_val_solution.csv")
SYNSET_FILE = "LOC_synset_mapping.txt"


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
    _handle: object = field(default=None, repr=False, compare=False)
    _pid: int = field(default=-1, repr=False, compare=False)

    def __post_init__(self):
        # Workers read names from one bytes buffer: touching a million Python strings from
        # forked workers would copy their pages into every worker (refcount writes).
        self._names = np.array([f.encode() for f in self.files], dtype=np.bytes_)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> bytes:
        """The encoded bytes of picture ``i``."""
        if self.tar_spans is None:
            return (self.source / self._names[i].decode()).read_bytes()
        if self._pid != os.getpid():  # a forked worker must not share its parent's file position
            self._handle, self._pid = open(self.source, "rb"), os.getpid()
        offset, size = self.tar_spans[i]
        self._handle.seek(int(offset))
        return self._handle.read(int(size))

    def __getstate__(self):  # spawned workers open their own handle
        return {**self.__dict__, "_handle": None, "_pid": -1}


def is_plain_tar(path: Path) -> bool:
    return path.is_file() and path.name.endswith(".tar")


def _scan(source: Path) -> tuple[list[str], dict[str, tuple[int, int]] | None, dict[str, bytes]]:
    """(file names, tar spans or None, small text files by name) of a folder or plain .tar."""
    texts: dict[str, bytes] = {}
    wanted = ("wnids.txt", "words.txt", SYNSET_FILE, *ANNOTATION_FILES)
    if source.is_dir():
        names = []
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            rel = Path(dirpath).relative_to(source)
            for f in sorted(filenames):
                name = (rel / f).as_posix()
                names.append(name)
                if f in wanted:
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
            if Path(member.name).name in wanted:
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
    split layouts (an ImageFolder has only its one set)."""
    source = Path(source)
    if not source.exists():
        raise LayoutError(f"data path {source} does not exist")
    names, spans, texts = _scan(source)
    images = [n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise LayoutError(f"{source}: no images found (expected <root>/<class>/*.jpg or a train/ folder)")
    base = _split_base(images)
    if base is None and split != "train":
        raise LayoutError(f"{source}: no {split}/ split (an image folder without a train/ folder is one set)")
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
            raise LayoutError(f"{source}: no images under {split_dir or split + '/'}")
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
    pairs.sort(key=lambda p: (index[p[0]], p[1]))
    files = [n for _, n in pairs]
    return Listing(source, files, torch.tensor([index[c] for c, _ in pairs], dtype=torch.int64), ids,
                   _readable(ids, texts, base),
                   None if spans is None else np.array([spans[n] for n in files], dtype=np.int64).reshape(-1, 2))
