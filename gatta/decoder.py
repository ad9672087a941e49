"""The one image decoder: training, the client and the server-side preprocessing model all
turn encoded bytes into pixels here, so a photo is seen the same way everywhere.

EXIF orientation is applied (a phone photo stored sideways is seen upright), everything
becomes RGB, then the model's :class:`Preprocessing` makes it the model's square input:
``squash`` (the whole picture resized to the square, the toy model's way) or ``crop``
(torchvision's and timm's evaluation transform: the shorter side resized to
``int(input_size / crop_pct)``, then the centre ``input_size`` square). Decompression bombs
are refused from the header, before any pixel is decoded.

Self-contained on purpose (io, dataclasses, numpy and Pillow only): the exporter copies this
file's source into the preprocessing model of the Triton repository, which cannot import
``gatta``.
"""

import io
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
MAX_PIXELS = 40_000_000
RESIZE_MODES = ("squash", "crop")
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


class DecodeError(ValueError):
    """Bytes that are not a usable image; the message says why in one line."""


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes the model's input, recorded with the weights (timm's
    ``PretrainedCfg``: input size, crop fraction, interpolation, mean, std).

    ``mean``/``std`` are stated for readers and checked against the model's config; the model
    applies them itself (the served ``image`` stays pixels in [0, 1]). ``None``: not recorded
    (a repository exported before this record).

    >>> Preprocessing(224, resize="crop", crop_pct=0.875).resize_side
    256
    """

    input_size: int  # the model's square input side, pixels
    resize: str = "squash"  # one of RESIZE_MODES
    crop_pct: float = 1.0  # crop: the centre square's share of the resized shorter side
    interpolation: str = "bilinear"  # a key of INTERPOLATIONS
    mean: Optional[tuple] = None  # per-channel normalisation on the [0, 1] scale
    std: Optional[tuple] = None  # (Optional, not "| None": the pasted copy may run on Python < 3.10)

    def __post_init__(self):
        if int(self.input_size) < 1:
            raise ValueError(f"preprocessing: input_size {self.input_size} must be positive")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"preprocessing: resize {self.resize!r} is not one of {', '.join(RESIZE_MODES)}")
        if not 0 < float(self.crop_pct) <= 1:
            raise ValueError(f"preprocessing: crop_pct {self.crop_pct} must be in (0, 1]")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"preprocessing: interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != 3:
                    raise ValueError(f"preprocessing: {name} needs 3 values (R, G, B), got {list(value)}")
                object.__setattr__(self, name, tuple(float(v) for v in value))

    @property
    def resize_side(self) -> int:
        """crop: the shorter side's length before the centre crop (torchvision: 224 -> 256)."""
        return int(self.input_size / self.crop_pct)

    def to_dict(self) -> dict:
        out = asdict(self)
        for name in ("mean", "std"):
            out[name] = None if out[name] is None else list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"preprocessing: unknown fields {', '.join(sorted(unknown))}")
        return cls(**data)

    def apply(self, img):
        """An upright RGB PIL image -> the model's input_size x input_size PIL image."""
        size, resample = self.input_size, INTERPOLATIONS[self.interpolation]
        if self.resize == "squash":
            return img if img.size == (size, size) else img.resize((size, size), resample)
        # torchvision Resize(int) then CenterCrop, on PIL images, to the pixel
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_side, int(self.resize_side * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), resample)
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        return img.crop((left, top, left + size, top + size))


def upright_rgb(img):
    """A PIL image -> upright (EXIF orientation applied) RGB; refuses oversized images."""
    if img.width * img.height > MAX_PIXELS:
        raise DecodeError(f"image is {img.width}x{img.height} pixels, over the {MAX_PIXELS:,} limit")
    return ImageOps.exif_transpose(img).convert("RGB")


def pil_to_array(img, size=None):
    """A PIL image -> uint8 [3, H, W] RGB, upright. ``size``: None (as stored), an int (squash
    to ``size`` x ``size``, bilinear) or a :class:`Preprocessing`."""
    return _array(upright_rgb(img), size)


def _array(img, size):
    if size:
        img = (size if isinstance(size, Preprocessing) else Preprocessing(size)).apply(img)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def open_image(data, max_bytes=None, then=lambda img: img):
    """Encoded bytes -> ``then(upright RGB PIL image)``; every failure is a DecodeError."""
    if not data:
        raise DecodeError("empty file")
    if max_bytes is not None and len(data) > max_bytes:
        raise DecodeError(f"encoded image is {len(data):,} bytes, over the {max_bytes:,} limit")
    try:
        with Image.open(io.BytesIO(data)) as img:
            # Image.open reads only the header: the size check in upright_rgb runs before
            # exif_transpose/convert decode anything.
            return then(upright_rgb(img))
    except DecodeError:
        raise
    except Image.DecompressionBombError:
        raise DecodeError(f"refused: larger than {MAX_PIXELS:,} pixels (decompression bomb?)") from None
    except Exception as exc:  # Pillow raises many types for truncated or foreign files
        reason = "not an image" if "cannot identify" in str(exc) else f"{type(exc).__name__}: {exc}"
        raise DecodeError(f"cannot decode image ({reason})") from None


def decode_image(data, size=None, max_bytes=None):
    """Encoded image bytes -> uint8 [3, H, W] (see :func:`pil_to_array`); raises DecodeError."""
    return open_image(data, max_bytes, lambda img: _array(img, size))


def to_float(pixels):
    """uint8 [3, H, W] -> float32 in [0, 1], the classifier's ``image``."""
    return pixels.astype(np.float32) / 255.0
