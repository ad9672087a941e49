"""Typed results of classification. The model description the client reads from the server
is the contract's :class:`gatta.contract.ModelMetadata` (``ModelInfo`` here)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gatta.contract import LayerInfo, ModelMetadata

ModelInfo = ModelMetadata  # what `GattaClient.info` holds: read from Triton's model config
__all__ = ["Classification", "LayerInfo", "ModelInfo"]


@dataclass
class Classification:
    """One image's result. ``error`` is set (and the rest empty) when it could not be classified."""

    source: str
    label: str | None = None
    index: int | None = None
    prob: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    gatta: dict[str, np.ndarray] | None = None
    q_avg: np.ndarray | None = None
    lesion: str | None = None
    prior: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        """The JSONL record: path, label, index, prob, top_k (+ error, lesion, prior)."""
        out = {"path": self.source}
        if self.error:
            out["error"] = self.error
            return out
        out.update(label=self.label, index=self.index, prob=round(self.prob, 6),
                   top_k=[[l, round(p, 6)] for l, p in self.top_k])
        if self.lesion:
            out["lesion"] = self.lesion
        if self.prior:
            out["prior"] = self.prior
        return out
