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
import torch.nn.functional as F
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
            # Non-affine: keeps the trained parameters to K, Q and alpha (Table 1 counts).
            self.key_norms = nn.ModuleList(nn.BatchNorm1d(d, affine=False) for _ in taps)
            self.query_norms = nn.ModuleList(nn.BatchNorm1d(d, affine=False) for _ in taps)
        self.gatta_layernorm = gatta_layernorm
        self.materialize: bool | None = None  # force (True) or forbid (False) the map path

    # -- projections -------------------------------------------------------------------
    @staticmethod
    def _project_map(x: torch.Tensor, linear: nn.Linear, kind: str) -> torch.Tensor:
        """Eq. 1/2: [B, N, d] keys or queries, N = positions (conv) or units (dense)."""
        if kind == "conv":  # [B, C, H, W] -> [B, HW, C]: a view for channels-last maps
            return linear(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1]))
        return x.unsqueeze(-1) * linear.weight.t() + linear.bias

    def _norm(self, z: torch.Tensor, norms: nn.ModuleList | None, i: int) -> torch.Tensor:
        if norms is None:
            return z
        b, n, d = z.shape
        return norms[i](z.reshape(b * n, d)).reshape(b, n, d)

    def _use_maps(self) -> bool:
        if self.materialize is not None:
            return self.materialize
        return self.training and (self.dropout.p > 0 or self.qk_batchnorm)

    # -- public -------------------------------------------------------------------------
    def global_query(self, acts: list[torch.Tensor]) -> torch.Tensor:
        """Eq. 3: mean over layers of each layer's mean query; [B, d]."""
        per_layer = []
        for i, (x, tap) in enumerate(zip(acts, self.taps)):
            lin = self.queries[i]
            if self._use_maps():
                q = self._project_map(x, lin, tap.kind)
                q = fast_dropout(self._norm(q, getattr(self, "query_norms", None), i), self.dropout.p, self.training)
                per_layer.append(q.mean(1))
                continue
            if tap.kind == "conv":
                q_mean = x.mean((2, 3)) @ lin.weight.t() + lin.bias
            else:  # the tap's static width, not x.shape: no shape arithmetic in the exported graph
                q_mean = (x @ lin.weight.t()) / tap.channels + lin.bias
            if self.qk_batchnorm:  # eval-mode batch-norm: affine, commutes with the mean
                bn = self.query_norms[i]
                q_mean = (q_mean - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
            per_layer.append(q_mean)
        return torch.stack(per_layer, 0).mean(0)

    def agreement(self, acts: list[torch.Tensor], q_avg: torch.Tensor) -> list[torch.Tensor]:
        """Eq. 4: gatta map per layer, [B, H, W] for conv maps and [B, C] for dense."""
        out = []
        for i, (x, tap) in enumerate(zip(acts, self.taps)):
            lin = self.keys[i]
            if self._use_maps():
                k = self._project_map(x, lin, tap.kind)
                k = fast_dropout(self._norm(k, getattr(self, "key_norms", None), i), self.dropout.p, self.training)
                g = (k @ q_avg.unsqueeze(-1)).squeeze(-1).reshape(x.shape[0], *tap.map_shape)
            else:
                q, bias = q_avg, lin.bias
                if self.qk_batchnorm:  # k' = (k - mu) * s  ->  k' . q = k . (s q) - mu . (s q)
                    bn = self.key_norms[i]
                    scale = torch.rsqrt(bn.running_var + bn.eps)
                    q = q_avg * scale
                    bias = bias - bn.running_mean
                v = q @ lin.weight  # [B, C]: K_i q_avg
                offset = (q @ bias.unsqueeze(-1))  # [B, 1]: b_i . q_avg
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
            if self.gatta_layernorm:
                g = F.layer_norm(g, g.shape[1:])
            out.append(g)
        return out

    @staticmethod
    def modulate(x: torch.Tensor, gatta: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """Eq. 5: ``x * (1 + gain * gatta)`` with ``gain = alpha_i * mask_i`` per image [B]."""
        scale = gain.view(-1, *([1] * (gatta.dim() - 1))) * gatta
        if x.dim() == 4:
            scale = scale.unsqueeze(1)
        return x * (1 + scale)
