"""Small shared builders for tests: tiny trained-looking models and synthetic data on disk."""

import io
import tarfile
from pathlib import Path

import numpy as np
import torch

from gatta.model.checkpoint import save_checkpoint
from gatta.model.config import GattaConfig
from gatta.model.network import GattaNet


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


WNIDS = ["n03000001", "n01000001", "n02000001"]  # wnids.txt is not sorted; labels follow sorted ids
WORDS = {"n01000001": "goldfish, Carassius auratus", "n02000001": "crane", "n03000001": "crane, derrick",
         "n09999999": "not in this set"}


def jpeg_bytes(seed: int, width: int = 20, height: int = 14) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_file(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def tiny_imagenet(root: Path, per_class: int = 4, val: int = 6) -> Path:
    """The tiny-imagenet-200 tree in miniature: train/<wnid>/images, val/images + annotations."""
    write_file(root / "wnids.txt", "\n".join(WNIDS) + "\n")
    write_file(root / "words.txt", "".join(f"{k}\t{v}\n" for k, v in WORDS.items()))
    for c, wnid in enumerate(WNIDS):
        for n in range(per_class):
            write_file(root / "train" / wnid / "images" / f"{wnid}_{n}.JPEG", jpeg_bytes(100 * c + n))
        write_file(root / "train" / wnid / f"{wnid}_boxes.txt", "")
    rows = []
    for k in range(val):
        write_file(root / "val" / "images" / f"val_{k}.JPEG", jpeg_bytes(1000 + k))
        rows.append(f"val_{k}.JPEG\t{WNIDS[k % 3]}\t0\t0\t10\t10\n")
    write_file(root / "val" / "val_annotations.txt", "".join(rows))
    write_file(root / "test" / "images" / "test_0.JPEG", jpeg_bytes(5000))
    return root


def tar_tree(tree: Path, out: Path, arcname: str, mode: str = "w") -> Path:
    """``tree`` packed as ``arcname`` into ``out`` (mode ``w:gz``: a .tar.gz)."""
    with tarfile.open(out, mode) as tar:
        tar.add(tree, arcname=arcname)
    return out


def calibrate_batch_norms(model, image_size: int, batches: int = 3, seed: int = 0):
    """Running statistics measured on random pictures, as trained weights carry them: with
    torch's defaults (mean 0, variance 1) a deep random network's activations vanish in eval
    mode (a random EfficientNet's logits are ~1e-13), and a layer norm over such a map turns
    float32 rounding into visible differences that no trained model has."""
    import torch

    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    gen = torch.Generator().manual_seed(seed)
    model.backbone.train()
    with torch.no_grad():
        for _ in range(batches):
            model.forward_backbone(torch.rand(8, 3, image_size, image_size, generator=gen))
    for m in norms:
        m.momentum = 0.1
    return model.eval()
