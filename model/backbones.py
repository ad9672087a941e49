"""Backbones as sequences of stages, each stage ending at one attached (tapped) layer.

GAttANet reads every attached layer and modulates it on the next pass "at the same point
where it was read". Cutting the backbone into stages that end exactly at those points makes
both jobs a loop: ``h = stage(h)`` gives the activation to read, and the modulated ``h``
flows into the next stage. The work before the first attached layer is stage 0, which is
identical in every pass and therefore runs once.

Which layers are attached, and how a family's CNN is cut into stages there, is described once per
family in ``model/families/`` (the rule: ``model/attach.py``); the toy model is built here.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn


@dataclass(frozen=True)
class Tap:
    """One attached layer: its name, kind (``conv`` map or ``dense`` units) and shape."""

    name: str
    kind: str
    shape: tuple[int, ...]  # (C, H, W) for conv maps, (C,) for dense layers

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def map_shape(self) -> tuple[int, ...]:
        """Shape of this layer's gatta map per image: (H, W) for conv, (C,) for dense."""
        return self.shape[1:] if self.kind == "conv" else self.shape


class StagedBackbone(nn.Module):
    """A frozen CNN split into stages; stage i ends at attached layer ``tap_names[i]``."""

    def __init__(self, stages: list[nn.Module], tap_names: list[str]):
        super().__init__()
        assert len(stages) == len(tap_names)
        self.stages = nn.ModuleList(stages)
        self.tap_names = list(tap_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    @torch.no_grad()
    def probe_taps(self, image_size: int) -> list[Tap]:
        """Run one dummy image to learn each attached layer's kind and shape."""
        was_training = self.training
        self.eval()
        h = torch.zeros(1, 3, image_size, image_size)
        taps = []
        for name, stage in zip(self.tap_names, self.stages):
            h = stage(h)
            kind = "conv" if h.dim() == 4 else "dense"
            taps.append(Tap(name, kind, tuple(h.shape[1:])))
        self.train(was_training)
        return taps


TOY_CHANNELS = (32, 64, 128)
# The paper's control: the toy model with a few more conv channels, so that the backbone alone
# has as many parameters as toy + d=16 head (636,462 vs 620,362 + 15,845 = 636,207).
TOY_WIDE_CHANNELS = (33, 65, 131)


def build_toy(num_classes: int, image_size: int = 32, dropout: float = 0.2,
              channels: tuple[int, int, int] = TOY_CHANNELS) -> StagedBackbone:
    """The paper's toy model: 3 conv (32/64/128, 3x3 same, ReLU, 2x2 max-pool, dropout 0.2),
    dense 256 + ReLU, dense to classes. Taps: conv maps after ReLU (before pooling), dense-256
    after ReLU, logits before softmax. 620,362 parameters for 10 classes."""
    c1, c2, c3 = channels

    def conv(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]

    def pool() -> list[nn.Module]:
        return [nn.MaxPool2d(2), nn.Dropout(dropout)]

    flat = c3 * (image_size // 8) ** 2
    stages = [
        nn.Sequential(*conv(3, c1)),
        nn.Sequential(*pool(), *conv(c1, c2)),
        nn.Sequential(*pool(), *conv(c2, c3)),
        nn.Sequential(*pool(), nn.Flatten(), nn.Linear(flat, 256), nn.ReLU()),
        nn.Sequential(nn.Dropout(dropout), nn.Linear(256, num_classes)),
    ]
    return StagedBackbone(stages, ["conv1", "conv2", "conv3", "dense1", "logits"])


# Table 1's ResNet taps, the names ResNet checkpoints carry (model/families/resnet.py)
RESNET_TAPS = ["stem", "layer1", "layer2", "layer3", "avgpool", "logits"]


def build_backbone(name: str, num_classes: int, image_size: int, weights=None) -> StagedBackbone:
    """Any known backbone, by its family's description (model/families/). ``weights``: a
    local state-dict file of the builder (nothing is downloaded)."""
    from .families import family_of

    return family_of(name).build(name, num_classes, image_size, weights)
