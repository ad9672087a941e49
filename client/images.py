"""Client-side image loading: paths, bytes, PIL images or arrays -> float32 [3, S, S] in [0, 1].

EXIF orientation is applied, everything becomes RGB, then a bilinear resize to the model's
square input. Decompression bombs are refused before decoding.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 40_000_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}

ImageLike = Union[str, Path, bytes, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input that is not a usable image."""


def describe(item: ImageLike) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, bytes):
        return f"<{len(item)} bytes>"
    if isinstance(item, np.ndarray):
        return f"<array {tuple(item.shape)}>"
    return f"<{type(item).__name__}>"


def _from_pil(img: Image.Image, size: int) -> np.ndarray:
    if img.width * img.height > MAX_PIXELS:
        raise ImageError(f"image is {img.width}x{img.height} pixels, over the {MAX_PIXELS:,} limit")
    img = ImageOps.exif_transpose(img).convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def load_image(item: ImageLike, size: int) -> np.ndarray:
    """One image as float32 [3, size, size] in [0, 1]; raises ImageError with the reason."""
    if isinstance(item, np.ndarray):
        return _from_array(item, size)
    if isinstance(item, Image.Image):
        return _from_pil(item, size)
    try:
        data = Path(item).read_bytes() if isinstance(item, (str, Path)) else bytes(item)
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}") from None
    if not data:
        raise ImageError("empty file")
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return _from_pil(img, size)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"refused: larger than {MAX_PIXELS:,} pixels (decompression bomb?)") from None
    except Exception as exc:  # Pillow raises many types for truncated or foreign files
        reason = "not an image" if "cannot identify" in str(exc) else f"{type(exc).__name__}: {exc}"
        raise ImageError(f"cannot decode ({reason})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _from_array(arr: np.ndarray, size: int) -> np.ndarray:
    """HWC or CHW, uint8 (0-255) or float (0-1)."""
    if arr.ndim != 3 or 3 not in (arr.shape[0], arr.shape[-1]):
        raise ImageError(f"array of shape {arr.shape} is not an RGB image (HWC or CHW)")
    hwc = arr if arr.shape[-1] == 3 else arr.transpose(1, 2, 0)
    if arr.dtype == np.uint8:
        return _from_pil(Image.fromarray(hwc), size)
    hwc = hwc.astype(np.float32)
    if not np.isfinite(hwc).all():
        raise ImageError("array contains NaN or infinite values")
    if hwc.shape[:2] == (size, size):
        return hwc.transpose(2, 0, 1).copy()
    return _from_pil(Image.fromarray((np.clip(hwc, 0, 1) * 255).round().astype(np.uint8)), size)


def expand_paths(inputs: list[str | Path]) -> list[Path]:
    """Files as given; directories walked recursively for image files, sorted."""
    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out
