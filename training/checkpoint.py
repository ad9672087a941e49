"""Self-describing checkpoints: config + weights + metadata, loaded without running code.

Layout (a plain dict, read with ``torch.load(weights_only=True)``)::

    {"format": "gattanet-checkpoint", "format_version": 1,
     "config": GattaConfig.to_dict(), "state_dict": {...},
     "meta": {"stage": "backbone"|"head", "epoch": ..., "val_acc": ..., ...},
     "optimizer": {...}, "rng_state": ByteTensor (optional, for --resume)}
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import GattaConfig
from .model import GattaNet

FORMAT = "gattanet-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, foreign or inconsistent."""


def save_checkpoint(path: str | Path, model: GattaNet, meta: dict | None = None,
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
        "meta": dict(meta or {}),
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
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no '{key}' dict")
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[GattaNet, dict]:
    """Rebuild the model from the checkpoint's config alone and load its weights.
    Returns (model in eval mode, payload)."""
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
    return model, payload
