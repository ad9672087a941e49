"""The bundled default model, exported on first use into a cache folder and re-exported
whenever the checkpoint's bytes or the exporter's code change (the folder name carries a hash
of both, so an upgraded gattanet never serves a repository written by an older exporter)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

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


def default_repository(ckpt: Path = BUNDLED_CHECKPOINT, flavour: str = "python", echo=print,
                       device: str = "gpu") -> Path:
    """A Triton repository for ``ckpt``; exported only when no export of these bytes exists."""
    ckpt = Path(ckpt)
    if not ckpt.exists():
        raise FileNotFoundError(f"default checkpoint {ckpt} is missing; pass --model-repository or --ckpt")
    repo = cache_root() / "repositories" / f"{ckpt.stem}-{checkpoint_digest(ckpt)}-{flavour}-{device}"
    if (repo / "gatta" / "1" / "model.onnx").exists():
        return repo
    from gatta.extras import require

    require("onnx", "export")
    from gatta.export.exporter import ExportOptions, export_checkpoint

    echo(f"exporting {ckpt} -> {repo} (first use of this checkpoint)")
    tmp = repo.with_name(repo.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    export_checkpoint(ckpt, ExportOptions(out=tmp, flavour=flavour, device=device))
    shutil.rmtree(repo, ignore_errors=True)
    tmp.rename(repo)
    return repo
