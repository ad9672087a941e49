"""Training augmentations, named by the recipe (``Family.augmentation``, ``--augmentation``),
the same whichever way a dataset holds its pixels (training/dataset.py):

- ``shift-rotate-flip``: the paper's, on a float batch of evaluation views: rotation up to
  +-20 degrees, shifts up to 20% of width/height, horizontal flips, edges repeating the border
  pixel (Keras 'nearest'); drawn from the epoch's generator after its order (sampling.py).
- ``random-resized-crop``: torchvision's ImageNet reference, per picture: a random-resized crop
  to the input size (scale 0.08-1, aspect 3/4-4/3, the model's interpolation), then a
  horizontal flip; seeded by (seed, epoch, picture).
- ``none``: the evaluation view.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from gatta.decoder import INTERPOLATIONS, Preprocessing

AUGMENTATIONS = ("shift-rotate-flip", "random-resized-crop", "none")
RRC_SCALE = (0.08, 1.0)  # torchvision's RandomResizedCrop defaults
RRC_RATIO = (3 / 4, 4 / 3)


def check_augmentation(name: str) -> str:
    if name not in AUGMENTATIONS:
        raise ValueError(f"augmentation {name!r}: choose one of {', '.join(AUGMENTATIONS)}")
    return name


def augment(x: torch.Tensor, generator: torch.Generator | None = None, rotation: float = 20.0,
            shift: float = 0.2, flip: bool = True) -> torch.Tensor:
    """``shift-rotate-flip`` on a float batch [B, 3, H, W] (see module doc)."""
    b = x.shape[0]
    dev = x.device
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(rotation)
    tx, ty = ((torch.rand(2, b, generator=generator) * 2 - 1) * shift * 2)  # grid spans 2
    sx = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sx, -sin, tx], 1), torch.stack([sin * sx, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale=RRC_SCALE, ratio=RRC_RATIO) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` drawn from ``rng``: (left, top, w, h)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height  # ten misses: the centre crop, aspect clamped into range
    w, h = width, height
    if in_ratio < min(ratio):
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        w = int(round(h * max(ratio)))
    return (width - w) // 2, (height - h) // 2, w, h


def train_array(img, prep: Preprocessing, rng: np.random.Generator) -> np.ndarray:
    """``random-resized-crop`` of an upright RGB PIL image -> uint8 [3, S, S]."""
    left, top, w, h = random_resized_crop_box(img.width, img.height, rng)
    size = prep.input_size
    img = img.resize((size, size), INTERPOLATIONS[prep.interpolation], box=(left, top, left + w, top + h))
    arr = np.asarray(img, dtype=np.uint8)
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    return arr.transpose(2, 0, 1).copy()
