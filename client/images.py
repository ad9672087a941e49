"""Client-side image loading: paths, bytes, PIL images or arrays -> float32 [3, S, S] in [0, 1].

Encoded images go through gattanet's one decoder (:mod:`gatta.decoder`: EXIF orientation,
RGB, the model's recorded preprocessing (``ModelMetadata.preprocessing``: a squash, or a
resize + centre crop), decompression bombs refused), the same code that training and the
server-side preprocessing model run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from gatta.bounds import range_error
from gatta.contract import IMAGE
from gatta.decoder import IMAGE_SUFFIXES, DecodeError, Preprocessing, decode_image, pil_to_array, to_float

ImageLike = Union[str, Path, bytes, Image.Image, np.ndarray]
ImageError = DecodeError  # an input that is not a usable image; the message says why

__all__ = ["IMAGE_SUFFIXES", "ImageError", "ImageLike", "describe", "expand_paths", "load_image"]


def describe(item: ImageLike) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, bytes):
        return f"<{len(item)} bytes>"
    if isinstance(item, np.ndarray):
        return f"<array {tuple(item.shape)}>"
    return f"<{type(item).__name__}>"


def load_image(item: ImageLike, size: int | Preprocessing) -> np.ndarray:
    """One image as float32 [3, S, S] in [0, 1]; raises ImageError with the reason. ``size``:
    the model's preprocessing (``client.info.preprocessing``), or an int S to squash to S x S."""
    if isinstance(item, np.ndarray):
        return _from_array(item, size)
    if isinstance(item, Image.Image):
        return to_float(pil_to_array(item, size))
    try:
        data = Path(item).read_bytes() if isinstance(item, (str, Path)) else bytes(item)
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}") from None
    return to_float(decode_image(data, size))


def _from_array(arr: np.ndarray, size: int | Preprocessing) -> np.ndarray:
    """HWC or CHW, uint8 (0-255) or float (0-1); a float array already S x S is used as is."""
    if arr.ndim != 3 or 3 not in (arr.shape[0], arr.shape[-1]):
        raise ImageError(f"array of shape {arr.shape} is not an RGB image (HWC or CHW)")
    hwc = arr if arr.shape[-1] == 3 else arr.transpose(1, 2, 0)
    if arr.dtype == np.uint8:
        return to_float(pil_to_array(Image.fromarray(hwc), size))
    hwc = hwc.astype(np.float32)
    if not np.isfinite(hwc).all():
        raise ImageError("array contains NaN or infinite values")
    refused = range_error(IMAGE, hwc)  # e.g. 0..255 floats, which the resize below would clip
    if refused is not None:
        raise ImageError(refused)
    side = size.input_size if isinstance(size, Preprocessing) else size
    if hwc.shape[:2] == (side, side):
        return hwc.transpose(2, 0, 1).copy()
    return to_float(pil_to_array(Image.fromarray((np.clip(hwc, 0, 1) * 255).round().astype(np.uint8)), size))


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
