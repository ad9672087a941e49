"""The one image decoder: training, the client and the server-side preprocessing model all
turn encoded bytes into pixels here, so a photo is seen the same way everywhere.

EXIF orientation is applied (a phone photo stored sideways is seen upright), everything
becomes RGB, then a bilinear resize to the model's square input. Decompression bombs are
refused from the header, before any pixel is decoded.

Self-contained on purpose (io, numpy and Pillow only): the exporter copies this file's source
into the preprocessing model of the Triton repository, which cannot import ``gatta``.
"""

import io

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
MAX_PIXELS = 40_000_000


class DecodeError(ValueError):
    """Bytes that are not a usable image; the message says why in one line."""


def pil_to_array(img, size=None):
    """A PIL image -> uint8 [3, H, W] RGB, upright, resized to ``size`` x ``size`` when given."""
    if img.width * img.height > MAX_PIXELS:
        raise DecodeError(f"image is {img.width}x{img.height} pixels, over the {MAX_PIXELS:,} limit")
    img = ImageOps.exif_transpose(img).convert("RGB")
    if size and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def decode_image(data, size=None, max_bytes=None):
    """Encoded image bytes -> uint8 [3, H, W] (see :func:`pil_to_array`); raises DecodeError."""
    if not data:
        raise DecodeError("empty file")
    if max_bytes is not None and len(data) > max_bytes:
        raise DecodeError(f"encoded image is {len(data):,} bytes, over the {max_bytes:,} limit")
    try:
        with Image.open(io.BytesIO(data)) as img:
            # Image.open reads only the header: the size check in pil_to_array runs before
            # exif_transpose/convert decode anything.
            return pil_to_array(img, size)
    except DecodeError:
        raise
    except Image.DecompressionBombError:
        raise DecodeError(f"refused: larger than {MAX_PIXELS:,} pixels (decompression bomb?)") from None
    except Exception as exc:  # Pillow raises many types for truncated or foreign files
        reason = "not an image" if "cannot identify" in str(exc) else f"{type(exc).__name__}: {exc}"
        raise DecodeError(f"cannot decode image ({reason})") from None


def to_float(pixels):
    """uint8 [3, H, W] -> float32 in [0, 1], the classifier's ``image``."""
    return pixels.astype(np.float32) / 255.0
