"""The bundled default model, exported on first use into a cache folder and re-exported
whenever the checkpoint's bytes or the exporter's code change (the folder name carries a hash
of both, so an upgraded gattanet never serves a repository written by an older exporter).

Several checkpoints can share one repository (``gatta-serve --ckpt a.pt --ckpt resnet=b.pt``,
``make view MODELS="..."``): each is exported under its own model name, and Triton serves them all.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Sequence

from gatta.contract import MODEL_NAME
from gatta.models import BUNDLED
from gatta.models import DEFAULT_CHECKPOINT as BUNDLED_CHECKPOINT

from .launcher import cache_root


def source_digest(folder: Path) -> str:
    """Hash of the code files below ``folder`` (names and bytes)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.suffix in (".py", ".pbtxt", ".json") and p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def checkpoint_digest(path: Path) -> str:
    """Hash of the checkpoint's bytes and the code that turns them into a repository: the
    exporter and the shared modules it writes from (contract, decoder)."""
    import gatta
    import gatta.export

    h = hashlib.sha256(Path(path).read_bytes())
    for package in (gatta.export, gatta):
        h.update(source_digest(Path(package.__file__).parent).encode())
    return h.hexdigest()[:16]


DEFAULT_NAME = "gatta"  # the model name of a lone checkpoint, gatta-client's default before several models
# part of the export cache's key: raised when what gatta-export writes for the same checkpoint
# changes (2: the CPU twin's blocked-layout graph), so a cached repository from before is not reused
REPOSITORY_REVISION = 2


class ModelSpecError(ValueError):
    """Checkpoints that cannot be served side by side under the names asked for."""


def named_checkpoints(specs: Sequence[str | Path]) -> dict[str, Path]:
    """Model name -> checkpoint from ``PATH`` or ``NAME=PATH`` arguments. A lone unnamed
    checkpoint is served as ``gatta``; several unnamed ones by their file names' stems
    (``models/cifar10-toy-d16.pt`` -> ``cifar10-toy-d16``). Raises ModelSpecError in one line.

        >>> named_checkpoints(["models/a.pt", "resnet=runs/r/best.pt"])
        {'a': PosixPath('models/a.pt'), 'resnet': PosixPath('runs/r/best.pt')}
    """
    models: dict[str, Path] = {}
    for spec in map(str, specs):
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = (DEFAULT_NAME if len(specs) == 1 else Path(spec).stem), spec
        if not MODEL_NAME.fullmatch(name):
            raise ModelSpecError(f"model name {name!r} (from {spec!r}) must be letters, digits, '_', '.' or '-'; "
                                 "name it: NAME=PATH")
        if name in models:
            raise ModelSpecError(f"two checkpoints would both be served as '{name}' ({models[name]}, {path}); "
                                 "name them: NAME=PATH")
        models[name] = Path(path)
    if not models:
        raise ModelSpecError("no checkpoint to serve")
    return models


# --model's help in the scripts that serve the bundled models by default (demo, viewer)
MODELS_HELP = (f"Checkpoint(s) to serve (repeatable); default: the bundled models, {' and '.join(BUNDLED)}. "
               "Several: each under NAME, or its file name.")


def checkpoints_or_bundled(specs: Sequence[str | Path] | None) -> dict[str, Path]:
    """:func:`named_checkpoints` of ``specs``; with none, every bundled model under its name."""
    return named_checkpoints(specs) if specs else dict(BUNDLED)


def default_repository(ckpt: Path = BUNDLED_CHECKPOINT, flavour: str = "python", echo=print,
                       device: str = "gpu") -> Path:
    """A Triton repository for ``ckpt`` (model ``gatta``); exported only when no export of these
    bytes exists."""
    return models_repository({DEFAULT_NAME: Path(ckpt)}, flavour, echo, device)


def models_repository(models: dict[str, Path], flavour: str = "python", echo=print, device: str = "gpu") -> Path:
    """One Triton repository serving every checkpoint of ``models`` (name -> path) under its
    name; exported only when no export of these names and bytes exists."""
    for ckpt in models.values():
        if not Path(ckpt).exists():
            raise FileNotFoundError(f"checkpoint {ckpt} is missing; pass --model-repository or --ckpt")
    h = hashlib.sha256()
    h.update(f"{REPOSITORY_REVISION}\0".encode())
    for name, ckpt in sorted(models.items()):
        h.update(f"{name}\0{checkpoint_digest(ckpt)}\0".encode())
    label = "+".join(sorted(models))[:80]  # readable; the hash is what tells exports apart
    repo = cache_root() / "repositories" / f"{label}-{h.hexdigest()[:16]}-{flavour}-{device}"
    if all((repo / name / "1" / "model.onnx").exists() for name in models):
        return repo
    from gatta.extras import require

    require("onnx", "export")
    from gatta.export.exporter import ExportOptions, export_checkpoint

    tmp = repo.with_name(repo.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, ckpt in models.items():
        echo(f"exporting {ckpt} as '{name}' -> {repo} (first use of this checkpoint)")
        export_checkpoint(ckpt, ExportOptions(out=tmp, name=name, flavour=flavour, device=device))
    shutil.rmtree(repo, ignore_errors=True)
    tmp.rename(repo)
    return repo
