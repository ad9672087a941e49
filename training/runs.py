"""What each ``gatta-train`` training command does, as library functions (the CLI is a thin
layer over these; tests call them directly).

- ``train_backbone``: a backbone from scratch (the toy models; ResNets as torchvision trains them);
- ``train_head``: the attention head on a frozen backbone (toy checkpoint or torchvision ResNet);
- ``finetune``: a trained GAttANet's backbone jointly with its head, or the backbone alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from gatta.model.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint
from gatta.model.classes import weights_classes
from gatta.decoder import Preprocessing

from gatta.model.config import IMAGENET_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, GattaConfig, imagenet_preprocessing
from gatta.model.families import family_of
from .augment import check_augmentation
from .data import DataError, channel_stats, load_dataset, stratified_split
from .dataset import ImageSet
from gatta.model.network import GattaNet
from gatta.model.recipe import DEFAULT_SPLIT_SEED, DEFAULT_VAL_SIZE, Recipe, recipe
from .train import FitOptions, fit


@dataclass
class RunOptions:
    """What every training run takes; ``None`` fields come from the paper's recipe."""

    data: str  # dataset path or synthetic:N[:classes]
    out: Path
    epochs: int = 500
    val_size: int = DEFAULT_VAL_SIZE
    split_seed: int = DEFAULT_SPLIT_SEED
    patience: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    l2: float | None = None
    augmentation: str | None = None  # shift-rotate-flip, random-resized-crop or none; None: the family's
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 2  # threads that decode images (streamed data: DataLoader worker processes)
    data_mode: str = "auto"  # memory, stream, or auto: by the decoded size (training/streaming.py)
    resume: bool = False
    clip_grad: float | None = None
    precision: str = "auto"
    schedule: str | None = None  # constant | cosine; None: the recipe's
    recipe: str = ""  # the named recipe (--recipe), recorded in the checkpoint
    overrides: dict = field(default_factory=dict)  # its values this run's options replaced

    def fit_options(self, stage: str, rules: Recipe, meta: CheckpointMeta) -> FitOptions:
        meta.recipe, meta.overrides = self.recipe, dict(self.overrides)
        return FitOptions(
            stage=stage, out_dir=self.out, epochs=self.epochs,
            batch_size=self.batch_size or rules.batch_size, lr=self.lr or rules.lr,
            l2=rules.l2 if self.l2 is None else self.l2,
            patience=next(p for p in (self.patience, rules.patience, self.epochs) if p is not None),
            augmentation=self.augmentation, seed=self.seed, device=self.device, resume=self.resume,
            clip_grad=self.clip_grad, precision=self.precision, run_meta=meta,
            optimizer=rules.optimizer, schedule=self.schedule or rules.schedule)


@dataclass
class HeadOptions:
    """The attention head's own settings; ``None``: the backbone family's recipe."""

    d: int | None = None  # None: the family's (toy 16, others 8)
    iterations: int = 1
    qk_dropout: float = 0.25
    qk_batchnorm: bool | None = None
    gatta_layernorm: bool | None = None
    alpha_init: float = 0.0
    init_ckpt: Path | None = None  # start from this GAttANet's head (same backbone)


# -- data ------------------------------------------------------------------------------------
def augmentation_of(run: RunOptions, backbone: str) -> str:
    """The run's augmentation: ``--augmentation`` (or its recipe's), else the backbone
    family's (toy: shift-rotate-flip; ImageNet-style CNNs: random-resized-crop)."""
    return check_augmentation(run.augmentation or family_of(backbone).augmentation)


def training_data(run: RunOptions, image_size: int | Preprocessing, backbone: str) -> ImageSet:
    """A run's training set, held or streamed: it gets the run's augmentation either way.
    ``--data-mode auto`` streams a random-resized-crop run when the source can stream, so the
    crop is of the stored picture (held pictures are the evaluation view)."""
    random_crop = augmentation_of(run, backbone) == "random-resized-crop"
    return load_dataset(run.data, image_size, run.num_workers, run.data_mode, random_crop=random_crop)


def split_data(data: ImageSet, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices; small datasets keep a fifth for validation."""
    val_size = min(val_size, len(data) // 5) if len(data) < 5 * val_size else val_size
    return stratified_split(data.labels, val_size, seed)


def check_classes(dataset: ImageSet, data: str, num_classes: int, source) -> None:
    if len(dataset.class_names) != num_classes:
        raise DataError(f"dataset {data} has {len(dataset.class_names)} classes but checkpoint "
                        f"{source} was trained for {num_classes}")


def in_trained_classes(dataset: ImageSet, data: str, model: GattaNet, meta: CheckpointMeta, source) -> ImageSet:
    """``dataset`` labelled as checkpoint ``source`` was trained: a head trained against its
    weights' classes (``meta.class_map``, gatta.model.classes) gets each class folder's recorded
    class; any other checkpoint needs the data's own classes."""
    if not meta.class_map:
        check_classes(dataset, data, model.config.num_classes, source)
        return dataset
    unknown = [c for c in dataset.class_names if c not in meta.class_map]
    if unknown:
        raise DataError(f"dataset {data}: class folder {unknown[0]!r} is not one {source} was trained on "
                        f"({', '.join(meta.class_map)})")
    index = torch.tensor([meta.class_map[c] for c in dataset.class_names])
    return replace(dataset, labels=index[dataset.labels], class_names=list(model.config.class_names))


def checkpoint_and_images(ckpt, data: str, device: str = "cpu", num_workers: int = 2, split: str = "val",
                          mode: str = "auto"):
    """A checkpoint, its dataset and the indices to evaluate: the checkpoint's own validation
    split (``val``), every training image (``all``) or the held-out test set (``test``: CIFAR's
    test batch, the official ``val/`` folder of Tiny-ImageNet and ImageNet)."""
    model, meta = load_checkpoint(ckpt, device)
    dataset = load_dataset(data, model.config.preprocessing, num_workers, mode, "test" if split == "test" else "train")
    dataset = in_trained_classes(dataset, data, model, meta, ckpt)
    if split in ("all", "test"):
        return model, dataset, torch.arange(len(dataset))
    return model, dataset, split_data(dataset, meta.val_size, meta.split_seed)[1]


# -- runs ------------------------------------------------------------------------------------
def train_backbone(run: RunOptions, backbone: str = "toy", image_size: int = 32,
                   crop_pct: float | None = None) -> dict:
    """Train a backbone from scratch; returns the best epoch's metrics. Toy models normalise
    with the training images' channel statistics and see the whole (squashed) picture;
    ResNets use ImageNet's statistics and are evaluated as torchvision evaluates them
    (shorter side to int(size / crop_pct), centre crop)."""
    if family_of(backbone).data_normalisation:
        dataset = training_data(run, image_size, backbone)
        train_idx, val_idx = split_data(dataset, run.val_size, run.split_seed)
        # held: every training picture; streamed: a seeded 1,000 (all would be a pass over the set)
        sample = train_idx if dataset.held else train_idx[torch.randperm(
            len(train_idx), generator=torch.Generator().manual_seed(0))[:1000]]
        mean, std = channel_stats(dataset.pictures(sample))
        extra = {"mean": mean, "std": std}
    else:
        prep = imagenet_preprocessing(image_size, crop_pct or IMAGENET_CROP_PCT)
        dataset = training_data(run, prep, backbone)
        train_idx, val_idx = split_data(dataset, run.val_size, run.split_seed)
        extra = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "preprocessing": prep}
    config = GattaConfig(backbone=backbone, num_classes=len(dataset.class_names),
                         class_names=dataset.class_names, image_size=image_size, **extra)
    meta = CheckpointMeta(data=str(run.data), val_size=len(val_idx), split_seed=run.split_seed)
    return fit(GattaNet(config), dataset, train_idx, val_idx,
               run.fit_options("backbone", recipe("backbone", backbone), meta))


def _head_config(base: GattaConfig, head: HeadOptions) -> GattaConfig:
    rules = recipe("head", base.backbone)
    return GattaConfig(**{
        **base.to_dict(), "d": head.d or family_of(base.backbone).d, "iterations": head.iterations, "qk_dropout": head.qk_dropout,
        "qk_batchnorm": rules.qk_batchnorm if head.qk_batchnorm is None else head.qk_batchnorm,
        "gatta_layernorm": rules.gatta_layernorm if head.gatta_layernorm is None else head.gatta_layernorm,
        "alpha_init": head.alpha_init})


def _load_head(model: GattaNet, init_ckpt: Path) -> None:
    start, _ = load_checkpoint(init_ckpt)
    if start.config.to_dict() != model.config.to_dict():
        raise CheckpointError(f"{init_ckpt}: its config differs from this run's (backbone, classes, d, options)")
    if any(not torch.equal(a, b) for a, b in zip(start.backbone.state_dict().values(),
                                                 model.backbone.state_dict().values())):
        raise CheckpointError(f"{init_ckpt}: its backbone weights differ from the backbone checkpoint's")
    model.head.load_state_dict(start.head.state_dict())


def train_head(run: RunOptions, head: HeadOptions, backbone_ckpt: Path | None = None,
               backbone_name: str | None = None, backbone_weights: Path | None = None,
               image_size: int | None = None, crop_pct: float | None = None,
               class_map: dict | None = None) -> dict:
    """Train K, Q and alpha on a frozen backbone: a trained toy checkpoint (its validation
    split is reused) or a torchvision ResNet with weights from a local file, evaluated as
    torchvision evaluates it (shorter side to int(size / crop_pct), centre crop; crop_pct
    default 0.875). A photo folder of some of the weights' classes trains against all of
    them: its folders are mapped by name or WordNet id, or by ``class_map``
    (gatta.model.classes)."""
    if backbone_ckpt is None and backbone_name is None:
        raise ValueError("give a backbone checkpoint (toy) or a torchvision backbone name (resnet18/resnet50)")
    meta = CheckpointMeta(data=str(run.data), val_size=run.val_size, split_seed=run.split_seed)
    if backbone_ckpt is not None and Path(backbone_ckpt).is_dir():
        # a backbone run's folder: its last epoch, the end of its schedule, is the one frozen
        if not (Path(backbone_ckpt) / "last.pt").exists():
            raise CheckpointError(f"{backbone_ckpt}: a run folder without last.pt (not a finished gatta-train backbone run?)")
        backbone_ckpt = Path(backbone_ckpt) / "last.pt"
    if backbone_ckpt is not None:
        base, base_meta = load_checkpoint(backbone_ckpt)
        cfg = base.config
        meta = replace(meta, val_size=base_meta.val_size, split_seed=base_meta.split_seed,
                       backbone_ckpt=str(backbone_ckpt), backbone_metrics=base_meta.metrics)
    else:
        prep = family_of(backbone_name).preprocessing(backbone_name, image_size, crop_pct)
        cfg = GattaConfig(backbone=backbone_name, num_classes=1000, image_size=prep.input_size,
                          mean=prep.mean, std=prep.std, preprocessing=prep)
    dataset = training_data(run, cfg.preprocessing, cfg.backbone)
    if backbone_ckpt is None:  # the data's classes, or the weights' with each folder mapped into them
        mapped = weights_classes(backbone_name, backbone_weights, dataset.class_names, class_map, run.data)
        if mapped is not None:
            meta.class_map = dict(zip(dataset.class_names, mapped[1]))
            dataset = replace(dataset, labels=torch.tensor(mapped[1])[dataset.labels], class_names=mapped[0])
        cfg.num_classes, cfg.class_names = len(dataset.class_names), dataset.class_names
    else:
        check_classes(dataset, run.data, cfg.num_classes, backbone_ckpt)
    model = GattaNet(_head_config(cfg, head), backbone_weights=backbone_weights)
    if backbone_ckpt is not None:
        model.backbone.load_state_dict(base.backbone.state_dict())
    if head.init_ckpt is not None:
        _load_head(model, head.init_ckpt)
        meta.init_ckpt = str(head.init_ckpt)
    train_idx, val_idx = split_data(dataset, meta.val_size, meta.split_seed)
    meta.val_size = len(val_idx)
    return fit(model, dataset, train_idx, val_idx,
               run.fit_options("head", recipe("head", model.config.backbone), meta))


def finetune(run: RunOptions, ckpt: Path, what: str) -> dict:
    """Fine-tune a trained GAttANet for ``run.epochs``: ``joint`` (backbone and head together,
    the paper's second open question) or ``backbone`` (the backbone alone, its head kept: the
    control with the same budget, recipe and data order). The validation split is the
    checkpoint's."""
    if what not in ("joint", "backbone"):
        raise ValueError(f"finetune: {what!r} is not joint or backbone")
    model, base_meta = load_checkpoint(ckpt)
    dataset = in_trained_classes(training_data(run, model.config.preprocessing, model.config.backbone),
                                 run.data, model, base_meta, ckpt)
    train_idx, val_idx = split_data(dataset, base_meta.val_size, base_meta.split_seed)
    meta = CheckpointMeta(data=str(run.data), init_ckpt=str(ckpt), finetune=what,
                          val_size=len(val_idx), split_seed=base_meta.split_seed, class_map=base_meta.class_map)
    rules = recipe("joint" if what == "joint" else "finetune-backbone", model.config.backbone)
    return fit(model, dataset, train_idx, val_idx, run.fit_options(what, rules, meta))
