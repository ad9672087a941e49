"""The FP32 model's answers a shipped checkpoint carries (``gatta-train ship``), and how far
another run of the model (a half-precision backbone, an exported graph) may move from them.
Read by the trainer that writes them and by the exporter that verifies against them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, read_checkpoint

# what half-precision weights are allowed to move the outputs, as for an FP16 export
REFERENCE_TOL = {"probs_abs": 1e-2, "logits_rel": 1e-2}


@dataclass
class Reference:
    images: torch.Tensor  # uint8 [N, 3, S, S]
    logits: torch.Tensor  # float32 [N, classes], from the FP32 model
    source: str

    def inputs(self) -> np.ndarray:
        """The pictures as the model's input: float32 in [0, 1]."""
        return self.images.float().div(255).numpy()


def read_reference(path: str | Path, config=None) -> Reference | None:
    """The reference a shipped checkpoint carries, or None (a training checkpoint). With the
    checkpoint's ``config``, its pictures and logits must fit the model."""
    payload = read_checkpoint(path)
    ref = payload.get("reference")
    if ref is None:
        return None
    try:
        images, logits = ref["images"], ref["logits"]
        ok = images.dtype == torch.uint8 and images.ndim == 4 and logits.ndim == 2 and len(images) == len(logits)
        if ok and config is not None:
            ok = tuple(images.shape[1:]) == (3, config.image_size, config.image_size) \
                and logits.shape[1] == config.num_classes
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: its 'reference' entry is malformed (expected uint8 images [N, 3, S, S] "
                              "and logits [N, classes] that fit its model)")
    return Reference(images, logits.float(), str(ref.get("source", "")))


def against_reference(logits: np.ndarray, reference: Reference) -> dict:
    """How far ``logits`` (for the reference pictures) are from the FP32 model's: max relative
    logit difference, max probability difference, top-1 agreement; ``ok`` within REFERENCE_TOL."""
    ref = reference.logits.numpy()
    logits_rel = float(np.abs(logits - ref).max() / max(float(np.abs(ref).max()), 1e-12))
    probs = torch.softmax(torch.from_numpy(logits).float(), 1).numpy()
    probs_abs = float(np.abs(probs - torch.softmax(reference.logits, 1).numpy()).max())
    top1 = int((logits.argmax(1) == ref.argmax(1)).sum())
    ok = logits_rel <= REFERENCE_TOL["logits_rel"] and probs_abs <= REFERENCE_TOL["probs_abs"]  # NaN fails
    return {"logits_rel": logits_rel, "probs_abs": probs_abs, "top1_agree": top1, "n": len(ref), "ok": ok}
