"""The bundled default model, exported on first use into a cache folder and re-exported
whenever the checkpoint's bytes change (the folder name carries their hash)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from gatta.models import DEFAULT_CHECKPOINT as BUNDLED_CHECKPOINT

from .launcher import cache_root


def checkpoint_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def default_repository(ckpt: Path = BUNDLED_CHECKPOINT, flavour: str = "python", echo=print) -> Path:
    """A Triton repository for ``ckpt``; exported only when no export of these bytes exists."""
    ckpt = Path(ckpt)
    if not ckpt.exists():
        raise FileNotFoundError(f"default checkpoint {ckpt} is missing; pass --model-repository or --ckpt")
    repo = cache_root() / "repositories" / f"{ckpt.stem}-{checkpoint_digest(ckpt)}-{flavour}"
    if (repo / "gatta" / "1" / "model.onnx").exists():
        return repo
    from gatta.extras import require

    require("onnx", "export")
    from gatta.export.exporter import ExportOptions, export_checkpoint

    echo(f"exporting {ckpt} -> {repo} (first use of this checkpoint)")
    tmp = repo.with_name(repo.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    export_checkpoint(ckpt, ExportOptions(out=tmp, flavour=flavour))
    shutil.rmtree(repo, ignore_errors=True)
    tmp.rename(repo)
    return repo
