"""Self-describing checkpoints: config + weights + metadata, loaded without running code.

Layout (a plain dict, read with ``torch.load(weights_only=True)``)::

    {"format": "gattanet-checkpoint", "format_version": 1,
     "config": GattaConfig.to_dict(), "state_dict": {...},
     "meta": CheckpointMeta.to_dict(),
     "optimizer": {...}, "rng_state": ByteTensor (optional, for --resume)}
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from .families import family_of
from .config import GattaConfig
from .network import GattaNet
from .recipe import DEFAULT_SPLIT_SEED, DEFAULT_VAL_SIZE

FORMAT = "gattanet-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, foreign or inconsistent."""


def is_synthetic_data(spec: str | Path) -> bool:
    """Whether a ``--data`` value (and so a checkpoint's ``data``) names generated data,
    ``synthetic`` or ``synthetic:N[:classes]``, rather than a path; a folder that merely starts
    with the word, ``synthetic_photos/``, is a path.

    >>> [is_synthetic_data(s) for s in ("synthetic", "synthetic:64:4", "synthetic_photos", "data/x")]
    [True, True, False, False]
    """
    spec = str(spec)
    return spec == "synthetic" or spec.startswith("synthetic:")


@dataclass
class CheckpointMeta:
    """How a checkpoint came to be: the run's stage and epoch, its data and validation split
    (export and evaluation reuse the split), and where it started from. Saved as a plain dict
    beside the config; fields added later read back with their defaults."""

    stage: str = ""  # backbone, head or joint
    epoch: int = 0
    metrics: dict = field(default_factory=dict)  # this epoch's log row
    best: dict = field(default_factory=dict)  # the best epoch's log row so far
    stale: int = 0  # epochs since the best one (early stopping)
    data: str = ""  # dataset the run trained on
    val_size: int = DEFAULT_VAL_SIZE
    split_seed: int = DEFAULT_SPLIT_SEED
    backbone_ckpt: str = ""  # head runs: the frozen backbone's checkpoint
    backbone_metrics: dict = field(default_factory=dict)  # ... and its own metrics
    init_ckpt: str = ""  # runs that started from a trained GAttANet
    finetune: str = ""  # fine-tuning runs: what trained (joint or backbone)
    recipe: str = ""  # the named recipe the run was started with (gatta-train recipes), if any
    overrides: dict = field(default_factory=dict)  # options given beside it that replaced its values
    class_map: dict = field(default_factory=dict)  # class folder -> the weights' class index, where mapped

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CheckpointMeta":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def save_checkpoint(path: str | Path, model: GattaNet, meta: CheckpointMeta | dict | None = None,
                    optimizer_state: dict | None = None, rng_state: torch.Tensor | None = None) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves a
    truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": (CheckpointMeta(**meta) if isinstance(meta, dict) else meta or CheckpointMeta()).to_dict(),
    }
    if optimizer_state is not None:
        payload["optimizer"] = optimizer_state
    if rng_state is not None:  # dropout masks continue exactly on --resume
        payload["rng_state"] = rng_state
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """Load and validate the raw payload; every failure is one line naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a .pt checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure of a foreign/corrupt file lands here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it holds Python objects beyond tensors and plain data (refused: loading it could run code)"
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a gattanet checkpoint (no 'format': '{FORMAT}' entry; "
            "a bare state dict or another tool's file?)"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')!r} is not "
            f"supported (this gattanet reads version {FORMAT_VERSION})"
        )
    for key in ("config", "state_dict", "meta"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no '{key}' dict")
    return payload


def _before_table1_resnet_head(config: GattaConfig, unexpected: list[str]) -> bool:
    """A ResNet checkpoint of the earlier layout (layer1..layer4 taps, per-layer non-affine
    batch norms), or any head with those per-layer norms."""
    if any(k.startswith(("head.key_norms.", "head.query_norms.")) for k in unexpected):
        return True
    return family_of(config.backbone).name == "resnet" and bool(unexpected)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[GattaNet, CheckpointMeta]:
    """Rebuild the model from the checkpoint's config alone and load its weights.
    Returns (model in eval mode, its metadata)."""
    payload = read_checkpoint(path)
    try:
        config = GattaConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model config ({exc})") from None
    try:
        model = GattaNet(config)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    state = payload["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if (missing or unexpected) and _before_table1_resnet_head(config, unexpected):
        raise CheckpointError(
            f"{path}: written before the ResNet head took Table 1's structure (taps stem, layer1-3, avgpool, "
            "logits; one batch norm shared by keys and one by queries; layer norm with affine): train its "
            "head again (gatta-train head --backbone ... --backbone-weights ...)")
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match its config ({len(missing)} missing e.g. "
            f"{missing[:2]}, {len(unexpected)} unexpected e.g. {unexpected[:2]})"
        )
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[name].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise CheckpointError(
                f"{path}: weight {name} has shape {shape}, config implies {tuple(expected[name].shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: weight {name} holds NaN or infinite values")
    model.load_state_dict(state)
    model.to(map_location).eval()
    try:
        meta = CheckpointMeta.from_dict(payload["meta"])
    except TypeError as exc:
        raise CheckpointError(f"{path}: invalid metadata ({exc})") from None
    return model, meta
