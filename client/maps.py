"""Figure-3-style pictures of one classification: the image, then per attached layer what
attention did to it: the modulation alpha * gatta (a unit is scaled by 1 + alpha * gatta), so
red = attention raises the unit, blue = lowers it, whatever the sign of that layer's alpha.
Conv layers as heat maps centred on 0, dense layers as bar plots, the predicted class
highlighted on the logits layer. Repositories exported without alphas show raw gatta
(agreement with q_avg) instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import load_image
from .results import Classification, ModelInfo


def maps_figure(result: Classification, info: ModelInfo, image, path: str | Path) -> Path:
    """Write one PNG with 1 + (number of attached layers) panels; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = info.layers
    fig, axes = plt.subplots(1, len(layers) + 1, figsize=(2.6 * (len(layers) + 1), 2.9))
    axes[0].imshow(load_image(image, info.image_size).transpose(1, 2, 0), interpolation="nearest")
    axes[0].set_title(f"{result.label} ({result.prob:.0%})", fontsize=9)
    axes[0].axis("off")
    for ax, layer in zip(axes[1:], layers):
        g = np.asarray(result.gatta[layer.name])
        if layer.alpha is not None:
            g = layer.alpha * g
        if layer.kind == "conv":
            lim = float(np.abs(g).max()) or 1.0
            im = ax.imshow(g, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.axis("off")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
        else:
            colours = np.where(g >= 0, "#d6604d", "#4393c3").astype(object)
            is_logits = len(g) == len(info.labels) and layer.name == layers[-1].name
            if is_logits:
                colours[:] = "#bbbbbb"
                colours[result.index] = "#d7191c"
            ax.bar(np.arange(len(g)), g, color=list(colours), width=1.0 if len(g) > 32 else 0.8)
            ax.axhline(0, color="black", linewidth=0.5)
            ax.tick_params(labelsize=6)
            if is_logits and len(g) <= 20:
                ax.set_xticks(range(len(g)), info.labels, rotation=90, fontsize=6)
        ax.set_title(f"{layer.name}: {'alpha*gatta' if layer.alpha is not None else 'gatta'}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
