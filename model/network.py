"""GattaNet: a frozen staged backbone plus the attention head, both passes in one forward."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .backbones import Tap, build_backbone
from .config import GattaConfig
from .head import AttentionHead


@dataclass
class GattaOutput:
    """What one forward returns. ``gatta`` maps layer name -> map of the last attention step
    ([B, H, W] conv, [B, C] dense); ``baseline_logits`` are pass 1's logits, i.e. the frozen
    backbone alone, computed anyway."""

    logits: torch.Tensor
    baseline_logits: torch.Tensor
    q_avg: torch.Tensor | None = None
    gatta: dict[str, torch.Tensor] | None = None


class GattaNet(nn.Module):
    def __init__(self, config: GattaConfig, backbone_weights=None):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(
            config.backbone, config.num_classes, config.image_size, backbone_weights
        )
        self.taps: list[Tap] = self.backbone.probe_taps(config.image_size)
        self.head = AttentionHead(
            self.taps,
            config.d,
            qk_dropout=config.qk_dropout,
            qk_batchnorm=config.qk_batchnorm,
            gatta_layernorm=config.gatta_layernorm,
            alpha_init=config.alpha_init,
        )
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    # -- parameter groups ------------------------------------------------------------
    def freeze_backbone(self) -> "GattaNet":
        """Only K, Q and alpha train; the backbone stays in eval mode (see ``train``)."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self._backbone_frozen = True
        return self

    def unfreeze_backbone(self) -> "GattaNet":
        """The backbone trains too (stage ``backbone`` or ``joint``)."""
        for p in self.backbone.parameters():
            p.requires_grad_(True)
        self._backbone_frozen = False
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "_backbone_frozen", False):
            self.backbone.eval()  # no dropout, no batch-norm statistics updates
        return self

    @property
    def layer_names(self) -> list[str]:
        return [t.name for t in self.taps]

    @property
    def layer_kinds(self) -> list[str]:
        return [t.kind for t in self.taps]

    # -- forward ------------------------------------------------------------------------
    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std

    def forward_backbone(self, image: torch.Tensor) -> torch.Tensor:
        """The frozen backbone alone (logits), pixels in [0, 1]."""
        return self.backbone(self.normalize(image))

    def forward(
        self,
        image: torch.Tensor,
        lesion_mask: torch.Tensor | None = None,
        query_bias: torch.Tensor | None = None,
        return_maps: bool = False,
    ) -> GattaOutput:
        """image: [B, 3, H, W] in [0, 1]; lesion_mask: [B, L] or [L], 1 = modulated;
        query_bias: [B, d] added to q_avg (top-down attention)."""
        stages = self.backbone.stages
        batch = image.shape[0]
        if lesion_mask is None:
            gains = self.head.alpha.unsqueeze(0).expand(batch, -1)
        else:  # [B, L] or [L]: broadcast, not expanded (no shape arithmetic in the exported graph)
            gains = self.head.alpha * lesion_mask.to(image.dtype).reshape(-1, len(self.taps))

        # Pass 1 reads the frozen backbone. Only K and Q read these activations, so when the
        # backbone is frozen no autograd graph is kept through them.
        frozen = not any(p.requires_grad for p in self.backbone.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            h = self.normalize(image)
            acts = []
            for stage in stages:
                h = stage(h)
                acts.append(h)
        baseline_logits = h
        # Stage 0 (everything up to the first attached layer) is identical in every pass:
        # each step restarts from its unmodulated output, so its modulation never compounds.
        stage0 = acts[0]

        layer_gains = gains.split(1, 1)  # one Split in the exported graph, not a Gather per layer
        for _ in range(self.config.iterations):
            q_avg = self.head.global_query(acts)
            if query_bias is not None:
                q_avg = q_avg + query_bias
            gattas = self.head.agreement(acts, q_avg)
            # Next pass, reading this step's attention; activations of this pass feed the
            # next step's attention.
            new_acts = []
            h = stage0
            for i, stage in enumerate(stages):
                if i > 0:
                    h = stage(h)
                h = self.head.modulate(h, gattas[i], layer_gains[i])
                new_acts.append(h)
            acts = new_acts

        out = GattaOutput(logits=h, baseline_logits=baseline_logits)
        if return_maps:
            out.q_avg = q_avg
            out.gatta = dict(zip(self.layer_names, gattas))
        return out

    # -- bookkeeping --------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        return {
            "backbone_params": sum(p.numel() for p in self.backbone.parameters()),
            "attention_params": self.head.table1_count(),
            "attention_trainable": sum(p.numel() for p in self.head.parameters()),
        }
