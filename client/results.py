"""Typed results of classification, and the model description read from the server."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LayerInfo:
    name: str
    kind: str  # conv | dense
    shape: list[int]  # gatta map shape per image
    alpha: float | None = None  # modulation strength: a unit is scaled by 1 + alpha * gatta


@dataclass
class ModelInfo:
    """Everything the client needs, read from Triton's model config (no local configuration)."""

    name: str
    flavour: str
    image_size: int
    d: int
    labels: list[str]
    layers: list[LayerInfo]
    max_batch_size: int
    inputs: list[str]
    outputs: list[str]
    class_keys: np.ndarray | None = None  # [classes, d]
    baseline: bool = False

    @property
    def kinds(self) -> list[str]:
        return [l.kind for l in self.layers]


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
