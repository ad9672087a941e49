"""Pictures of one classification, drawn with numpy and Pillow (no matplotlib): the image the
model saw, then per attached layer what attention did to it, alpha * gatta (a unit is scaled
by 1 + alpha * gatta, so red = attention raises the unit, blue = lowers it, whatever the sign
of that layer's alpha). Conv maps are drawn over the image on one colour scale shared by all
conv layers and labelled on a colour bar; dense layers are bar plots, the predicted class red
on the logits layer. Repositories exported without alphas show raw gatta instead.

The CLI (``gatta-client classify --maps``) and the browser viewer use the same pieces. No
matplotlib: a figure is a few numpy lookups and Pillow pastes, so maps no longer cost hundreds
of times the inference (``scripts/bench_maps.py``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gatta import contract

from .images import ImageLike, load_image
from .results import Classification, LayerInfo, ModelInfo

# ColorBrewer RdBu (11 classes), reversed: blue for negative, white at zero, red for positive.
_RDBU_R = np.array([
    (5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
    (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31)], np.float32)
LUT = np.stack([np.interp(np.linspace(0, 10, 256), np.arange(11), _RDBU_R[:, c]) for c in range(3)], 1
               ).round().astype(np.uint8)  # [256, 3]
PANEL = 128  # pixels per panel side in the CLI figure
OVERLAY = 0.7  # map opacity over the (grey) image in the CLI figure
RED, BLUE, GREY = (214, 96, 77), (67, 147, 195), (187, 187, 187)


@lru_cache(maxsize=8)
def font(size: int = 11) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def modulation(layer: LayerInfo, gatta: np.ndarray) -> np.ndarray:
    """What the figures show: alpha * gatta, or raw gatta when the export carries no alpha."""
    g = np.asarray(gatta, np.float32)
    return g * layer.alpha if layer.alpha is not None else g


def label_for(layers: list[LayerInfo]) -> str:
    return "alpha*gatta" if all(l.alpha is not None for l in layers) else "gatta"


def shared_limit(result: Classification, info: ModelInfo) -> float:
    """One symmetric colour limit for every conv map of this result (max |alpha * gatta|)."""
    values = [np.abs(modulation(l, result.gatta[l.name])).max() for l in info.layers if l.kind == "conv"]
    return float(max(values, default=0.0)) or 1.0


def colourise(values: np.ndarray, limit: float) -> np.ndarray:
    """Map values in [-limit, limit] to RGB uint8 [..., 3] through the RdBu_r lookup table."""
    index = np.clip((np.asarray(values, np.float32) / limit + 1.0) * 127.5, 0, 255).astype(np.uint8)
    return LUT[index]


def conv_image(values: np.ndarray, limit: float) -> Image.Image:
    """A conv map at its own resolution, coloured; the viewer scales and overlays it in CSS."""
    return Image.fromarray(colourise(values, limit), "RGB")


def input_image(image: np.ndarray) -> Image.Image:
    """The model's input, float32 [3, S, S] in [0, 1], as an RGB image."""
    return Image.fromarray((np.clip(image, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8), "RGB")


def overlay(base: Image.Image, values: np.ndarray, limit: float, size: int = PANEL, opacity: float = OVERLAY) -> Image.Image:
    """The coloured map, upsampled to ``size``, over a grey copy of the image."""
    grey = base.convert("L").convert("RGB").resize((size, size), Image.NEAREST)
    return Image.blend(grey, conv_image(values, limit).resize((size, size), Image.NEAREST), opacity)


@lru_cache(maxsize=512)
def _text(text: str, size: int) -> Image.Image:
    """Text as an L mask, cached: titles and class names repeat on every figure of a run and
    rasterising them was a third of a figure's time."""
    f = font(size)
    box = f.getbbox(text)
    img = Image.new("L", (box[2] + 2, box[3] + 2), 0)
    ImageDraw.Draw(img).text((1, 0), text, fill=255, font=f)
    return img


@lru_cache(maxsize=64)
def _vertical_text(text: str, size: int) -> Image.Image:
    """Text rotated by 90 degrees (class names under the logits bars)."""
    return _text(text, size).rotate(90, expand=True)


def write(img: Image.Image, xy: tuple[float, float], text: str, size: int = 11) -> None:
    """Black text at ``xy`` (top left)."""
    mask = _text(text, size)
    x, y = int(xy[0]), int(xy[1])
    img.paste((0, 0, 0), (x, y, x + mask.width, y + mask.height), mask)


def bars_image(values: np.ndarray, width: int = PANEL, height: int = PANEL, highlight: int | None = None,
               names: list[str] | None = None) -> Image.Image:
    """A bar plot of a dense layer on white, centred on zero, its range labelled. With
    ``highlight`` (the logits layer) every bar is grey but the predicted class, red.
    Drawn as one numpy mask (hundreds of ImageDraw rectangles cost milliseconds)."""
    values = np.asarray(values, np.float32)
    n = len(values)
    label_h = max(_vertical_text(s, 9).height for s in names) + 2 if names and n <= 20 else 0
    top, bottom, left = 12, height - 2, 2
    limit = float(np.abs(values).max()) or 1.0
    zero = (top + bottom) / 2
    step = (width - left - 2) / max(n, 1)
    gap = 0 if n > 32 else max(1.0, step * 0.15)
    x = np.arange(width) - left
    bar = np.clip((x // step).astype(int), 0, n - 1)
    within = x - bar * step
    column = (x >= 0) & (x < n * step) & (within >= gap / 2) & (within < step - gap / 2)
    tip = zero - values[bar] * (bottom - top) / 2 / limit
    rows = np.arange(height)[:, None]
    inside = column & (rows >= np.minimum(tip, zero).round()) & (rows <= np.maximum(tip, zero).round())
    if highlight is not None:
        colours = np.where((bar == highlight)[:, None], RED, GREY)
    else:
        colours = np.where((values[bar] >= 0)[:, None], RED, BLUE)
    pixels = np.full((height + label_h, width, 3), 255, np.uint8)
    pixels[:height][inside] = np.broadcast_to(colours, (height, width, 3))[inside]
    pixels[int(zero), left:width - 2] = 0
    img = Image.fromarray(pixels, "RGB")
    write(img, (left, 0), f"range ±{limit:.3g}", 9)
    if label_h:
        for i, name in enumerate(names):
            mask = _vertical_text(name, 9)
            x0 = int(left + i * step + step / 2 - mask.width / 2)
            img.paste((0, 0, 0), (x0, height + 1, x0 + mask.width, height + 1 + mask.height), mask)
    return img


def layer_bars(layer: LayerInfo, values: np.ndarray, result: Classification, info: ModelInfo,
               width: int = PANEL, height: int = PANEL) -> Image.Image:
    """A dense layer's panel; on the logits layer the predicted class is red and named."""
    is_logits = layer is info.layers[-1] and len(values) == len(info.labels)
    return bars_image(values, width, height, highlight=result.index if is_logits else None,
                      names=info.labels if is_logits else None)


def colour_bar(limit: float, height: int = PANEL, width: int = 14, label: str = "alpha*gatta") -> Image.Image:
    """A vertical colour bar for [-limit, limit] with its ticks and quantity written beside it."""
    ramp = colourise(np.linspace(limit, -limit, height)[:, None].repeat(width, 1), limit)
    text_w = max(font(9).getbbox(f"{v:+.3g}")[2] for v in (limit, -limit)) + 4
    img = Image.new("RGB", (max(width + text_w, font(9).getbbox(label)[2] + 2), height + 12), "white")
    img.paste(Image.fromarray(ramp, "RGB"), (0, 0))
    for y, v in ((0, limit), (height / 2 - 5, 0.0), (height - 10, -limit)):
        write(img, (width + 3, y), f"{v:+.3g}" if v else "0", 9)
    write(img, (0, height + 1), label, 9)
    return img


def figure(result: Classification, info: ModelInfo, image: np.ndarray) -> Image.Image:
    """One row: the input (titled with the prediction), then one panel per attached layer,
    then the conv colour bar. ``image`` is the model's input, float32 [3, S, S]."""
    base = input_image(image)
    limit = shared_limit(result, info)
    what = label_for(info.layers)
    panels = [(f"{result.label} ({result.prob:.0%})", base.resize((PANEL, PANEL), Image.NEAREST))]
    for layer in info.layers:
        values = modulation(layer, result.gatta[layer.name])
        if layer.kind == "conv":
            panel = overlay(base, values, limit)
        else:
            panel = layer_bars(layer, values, result, info)
        panels.append((f"{layer.name}: {what}", panel))
    bar = colour_bar(limit, label=f"conv {what}") if any(l.kind == "conv" for l in info.layers) else None
    pad, title_h = 8, 16
    width = pad + sum(p.width + pad for _, p in panels) + (bar.width + pad if bar else 0)
    height = title_h + max(p.height for _, p in panels) + pad
    out = Image.new("RGB", (width, height), "white")
    x = pad
    for title, panel in panels:
        write(out, (x, 2), title, 11)
        out.paste(panel, (x, title_h))
        x += panel.width + pad
    if bar:
        out.paste(bar, (x, title_h))
    return out


def maps_figure(result: Classification, info: ModelInfo, image: ImageLike, path: str | Path) -> Path:
    """Write the figure to ``path`` (PNG) and the raw maps beside it (same name, ``.npz``:
    ``gatta_<layer>`` as served, ``alpha_<layer>`` where exported, ``q_avg``); returns the PNG's path.
    ``image`` is what was classified (path, bytes, PIL image or array)."""
    png = Path(path)
    png.parent.mkdir(parents=True, exist_ok=True)
    npz = png.with_suffix(".npz")
    figure(result, info, load_image(image, info.preprocessing)).save(png, compress_level=1)  # ~2x faster than 6, ~10% larger
    arrays = {contract.gatta_output(name): np.asarray(g) for name, g in result.gatta.items()}
    arrays.update({f"alpha_{l.name}": np.float32(l.alpha) for l in info.layers if l.alpha is not None})
    arrays[contract.Q_AVG] = np.asarray(result.q_avg)
    np.savez(npz, **arrays)
    return png


class MapWriter:
    """Write figures and raw maps on worker threads while classification goes on (PNG
    encoding and file writes release the GIL), at most ``2 * workers`` results held.

        with MapWriter(client.info, workers=2) as writer:
            for path, result in zip(paths, results):
                writer.write(result, path, out / f"{path.stem}.png")
    """

    def __init__(self, info: ModelInfo, workers: int = 2):
        from concurrent.futures import ThreadPoolExecutor

        self.info, self.written = info, 0
        self._pool, self._pending, self._limit = ThreadPoolExecutor(workers), [], 2 * workers

    def write(self, result: Classification, image: ImageLike, path: str | Path) -> None:
        self._pending.append(self._pool.submit(maps_figure, result, self.info, image, path))
        while len(self._pending) > self._limit:
            self._pending.pop(0).result()
            self.written += 1

    def close(self) -> None:
        """Wait for every figure; raise the first failure."""
        try:
            for future in self._pending:
                future.result()
                self.written += 1
        finally:
            self._pending = []
            self._pool.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
