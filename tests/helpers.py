"""Small shared builders for tests: tiny trained-looking models and synthetic data on disk."""

from pathlib import Path

import numpy as np
import torch

from gatta.training.checkpoint import save_checkpoint
from gatta.training.config import GattaConfig
from gatta.training.model import GattaNet


def make_model(num_classes=4, d=8, image_size=16, seed=0, alpha=0.5, **kw) -> GattaNet:
    torch.manual_seed(seed)
    model = GattaNet(GattaConfig(num_classes=num_classes, d=d, image_size=image_size,
                                 alpha_init=alpha, **kw)).eval()
    return model


def make_checkpoint(path: Path, **kw) -> Path:
    model = make_model(**kw)
    return save_checkpoint(path, model, {"stage": "head", "epoch": 1, "val_size": 16, "split_seed": 0})


def write_image_folder(root: Path, n_per_class=6, classes=("cat", "dog", "ship"), size=16, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i:04d}.png")
    return root
