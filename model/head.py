"""The GAttANet attention head (paper eqs. 1-4): keys, queries, q_avg and gatta maps.

Per attached layer i: K_i, Q_i are c_i x d with a d-sized bias (``nn.Linear(c_i, d)``);
alpha_i is one learned scalar. Conv maps project every position (eq. 1); dense layers
project every unit as ``activation(c) * K_i(c, :) + b`` (eq. 2).

Two evaluations of the same equations:
- ``maps`` (training): materialises every key and query map, so dropout and batch-norm act
  on them as in the paper.
- ``folded`` (eval, export): uses linearity. The mean of a projected map is the projection
  of the mean map, and ``gatta = k . q_avg = x . (K q_avg) + b . q_avg``, so no key map is
  ever built. Eval-mode batch-norm is an affine map and folds in the same way. For the toy
  model this cuts the head from ~17% of the backbone's multiply-adds to under 1%.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import Tap


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with 8-bit random numbers: 3-5x cheaper on CPU than ``bernoulli_`` for the
    large key/query maps (it dominated head training). The drop probability is rounded to
    a multiple of 1/256; 0.25 is exact."""
    if not training or p <= 0:
        return x
    threshold = round(p * 256)
    keep = torch.randint(0, 256, x.shape, dtype=torch.uint8, device=x.device) >= threshold
    return x * keep / (1 - threshold / 256)


class AttentionHead(nn.Module):
    def __init__(
        self,
        taps: list[Tap],
        d: int,
        qk_dropout: float = 0.25,
        qk_batchnorm: bool = False,
        gatta_layernorm: bool = False,
        alpha_init: float = 0.0,
    ):
        super().__init__()
        self.taps = list(taps)
        self.d = d
        self.keys = nn.ModuleList(nn.Linear(t.channels, d) for t in taps)
        self.queries = nn.ModuleList(nn.Linear(t.channels, d) for t in taps)
        self.alpha = nn.Parameter(torch.full((len(taps),), float(alpha_init)))
        self.dropout = nn.Dropout(qk_dropout)
        self.qk_batchnorm = qk_batchnorm
        if qk_batchnorm:
            # One batch norm over the d key features and one over the d query features, shared
            # by every attached layer: each layer's keys are vectors in the same d-dimensional
            # space that q_avg lives in, so they are standardised together. Table 1's ResNet
            # counts hold 8d for this: 2 x (scale, offset, running mean, running variance).
            self.key_norm = nn.BatchNorm1d(d)
            self.query_norm = nn.BatchNorm1d(d)
        self.gatta_layernorm = gatta_layernorm
        if gatta_layernorm:
            # Over each layer's whole map with a learned scale and offset per map position
            # (Keras LayerNormalization(axis=[1, 2]); Table 1: 2 x H x W per conv layer,
            # 2 x units per dense layer). The shape is the tap's, static: one op in ONNX.
            self.gatta_norms = nn.ModuleList(nn.LayerNorm(tuple(t.map_shape)) for t in taps)
        self.materialize: bool | None = None  # force (True) or forbid (False) the map path

    # -- projections -------------------------------------------------------------------
    @staticmethod
    def _project_map(x: torch.Tensor, linear: nn.Linear, kind: str) -> torch.Tensor:
        """Eq. 1/2: [B, N, d] keys or queries, N = positions (conv) or units (dense)."""
        if kind == "conv":  # [B, C, H, W] -> [B, HW, C]: a view for channels-last maps
            return linear(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1]))
        return x.unsqueeze(-1) * linear.weight.t() + linear.bias

    def _project_all(self, acts: list[torch.Tensor], linears: nn.ModuleList,
                     norm: nn.BatchNorm1d | None) -> list[torch.Tensor]:
        """Key or query maps of every layer, [B, N_i, d] each, batch-normalised together (one
        set of statistics over all positions of all layers), then dropped out."""
        maps = [self._project_map(x, linears[i], t.kind) for i, (x, t) in enumerate(zip(acts, self.taps))]
        if norm is not None:
            sizes = [m.shape[1] for m in maps]
            joined = torch.cat(maps, 1)
            b, n, d = joined.shape
            maps = list(norm(joined.reshape(b * n, d)).reshape(b, n, d).split(sizes, 1))
        return [fast_dropout(m, self.dropout.p, self.training) for m in maps]

    @staticmethod
    def _bn_affine(norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode batch norm as ``z * scale + shift`` (running statistics)."""
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.affine:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale
        if norm.affine:
            shift = shift + norm.bias
        return scale, shift

    def _stacked_queries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[sum C_i, d] and [d]: q_avg = concat(layer means) @ weight + bias, every layer's rows
        divided by the number of layers (the mean over layers). Parameters only: the exporter
        folds it to one initializer."""
        layers = len(self.taps)
        weight = torch.cat([lin.weight.t() / layers for lin in self.queries], 0)
        return weight, torch.stack([lin.bias for lin in self.queries]).mean(0)

    def _stacked_keys(self) -> torch.Tensor:
        """[d, sum C_i + L]: every K_i side by side, then every key bias b_i as a column, so that
        q @ it gives each layer's K_i q and b_i . q at once."""
        return torch.cat([lin.weight for lin in self.keys] + [torch.stack([lin.bias for lin in self.keys], 1)], 1)

    def _use_maps(self) -> bool:
        if self.materialize is not None:
            return self.materialize
        return self.training and (self.dropout.p > 0 or self.qk_batchnorm)

    # -- public -------------------------------------------------------------------------
    def global_query(self, acts: list[torch.Tensor]) -> torch.Tensor:
        """Eq. 3: mean over layers of each layer's mean query; [B, d]."""
        if self._use_maps():
            queries = self._project_all(acts, self.queries, getattr(self, "query_norm", None))
            return torch.stack([q.mean(1) for q in queries], 0).mean(0)
        # One matmul for every layer: the layer means side by side times the stacked projections
        # (``_stacked_queries``). The exported graph gets one Concat and one Gemm instead of a
        # projection, a bias and a reshape per layer and a mean over them.
        # a dense layer's mean over its units: its activations divided by its width here, not its
        # weights (divided by a few thousand, half-precision weights would fall into subnormals)
        means = [x.mean((2, 3)) if tap.kind == "conv" else x / tap.channels for x, tap in zip(acts, self.taps)]
        weight, bias = self._stacked_queries()
        q_avg = torch.cat(means, 1) @ weight + bias
        if self.qk_batchnorm:  # eval-mode batch norm is affine: it commutes with both means
            scale, shift = self._bn_affine(self.query_norm)
            q_avg = q_avg * scale + shift
        return q_avg

    def agreement(self, acts: list[torch.Tensor], q_avg: torch.Tensor) -> list[torch.Tensor]:
        """Eq. 4: gatta map per layer, [B, H, W] for conv maps and [B, C] for dense."""
        if self._use_maps():
            keys = self._project_all(acts, self.keys, getattr(self, "key_norm", None))
            out = [(k @ q_avg.unsqueeze(-1)).squeeze(-1).reshape(x.shape[0], *tap.map_shape)
                   for k, x, tap in zip(keys, acts, self.taps)]
            return self._layer_norm(out)
        q, shift = q_avg, None
        if self.qk_batchnorm:  # k' = k * s + t  ->  k' . q = k . (s q) + t . q
            scale, shift = self._bn_affine(self.key_norm)
            q = q_avg * scale
        # K_i q for every layer and every b_i . q in one matmul, then split per layer
        sizes = [tap.channels for tap in self.taps]
        directions, offsets = (q @ self._stacked_keys()).split([sum(sizes), len(sizes)], 1)
        if shift is not None:
            offsets = offsets + q_avg @ shift.unsqueeze(-1)
        out = []
        for x, tap, v, offset in zip(acts, self.taps, directions.split(sizes, 1), offsets.split(1, 1)):
            if tap.kind == "conv" and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1:
                b, c, h, w = x.shape
                g = torch.bmm(x.permute(0, 2, 3, 1).reshape(b, h * w, c), v.unsqueeze(-1)).reshape(b, h, w)
                g = g + offset.unsqueeze(-1)
            elif tap.kind == "conv":
                # shapes from the tap (static) and -1 for the batch: the exported graph gets
                # constant Reshape targets instead of Shape/Gather/Concat chains
                c, h, w = tap.shape
                g = torch.bmm(v.unsqueeze(1), x.reshape(-1, c, h * w)).reshape(-1, h, w)
                g = g + offset.unsqueeze(-1)
            else:
                g = x * v + offset
            out.append(g)
        return self._layer_norm(out)

    def _layer_norm(self, gattas: list[torch.Tensor]) -> list[torch.Tensor]:
        if not self.gatta_layernorm:
            return gattas
        return [norm(g) for norm, g in zip(self.gatta_norms, gattas)]

    def effective_keys(self, layer: int = -1) -> torch.Tensor:
        """[C, d]: row c is the direction in q_avg's space along which unit c's agreement
        grows, batch norm's scale included (the class directions of top-down attention)."""
        weight = self.keys[layer].weight.detach()  # [d, C]
        if self.qk_batchnorm:
            scale, _ = self._bn_affine(self.key_norm)
            weight = weight * scale.detach().unsqueeze(1)
        rows = weight.t()
        if self.gatta_layernorm:  # a negative layer-norm scale flips that unit's agreement
            gamma = self.gatta_norms[layer].weight.detach()
            rows = rows * torch.where(gamma < 0, -1.0, 1.0).unsqueeze(1)
        return rows

    def table1_count(self) -> int:
        """Attention parameters as the paper's Table 1 counts them (Keras): trainable weights
        plus batch norm's running statistics (not its step counter)."""
        stats = sum(b.numel() for name, b in self.named_buffers() if not name.endswith("num_batches_tracked"))
        return sum(p.numel() for p in self.parameters()) + stats

    @staticmethod
    def modulate(x: torch.Tensor, gatta: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """Eq. 5: ``x * (1 + gain * gatta)`` with ``gain = alpha_i * mask_i`` per image ([B] or [B, 1])."""
        scale = gain.view(-1, *([1] * (gatta.dim() - 1))) * gatta
        if x.dim() == 4:
            scale = scale.unsqueeze(1)
        return x * (1 + scale)
