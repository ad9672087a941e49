"""The paper's training recipes (section 2.0.3) in one place, per stage and backbone family.

Toy model: Adam lr 1e-3, batch 128, L2 1e-5 on K/Q, early stopping with long patience.
ResNets: Adam lr 3e-4, batch 8, no L2, batch-norm on keys/queries and layer-norm on gatta,
one epoch of patience. A ResNet backbone trained from scratch (not in the paper): SGD with Nesterov momentum
and cosine decay over a fixed budget. Fine-tuning a trained model (not in the paper) uses a 10x lower rate
and runs its whole fixed budget. A CLI flag overrides any field.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import GattaConfig


@dataclass(frozen=True)
class Recipe:
    lr: float
    batch_size: int
    l2: float  # on K/Q weights (head, joint) or every weight (backbone)
    patience: int | None  # epochs without a new best before stopping; None: the whole budget
    qk_batchnorm: bool = False
    gatta_layernorm: bool = False
    optimizer: str = "adam"  # adam, or sgd (momentum 0.9, Nesterov)
    schedule: str = "constant"  # constant, or cosine: decays to 0 over the run's --epochs


TOY_BACKBONE = Recipe(lr=1e-3, batch_size=128, l2=0.0, patience=50)
TOY_HEAD = Recipe(lr=1e-3, batch_size=128, l2=1e-5, patience=500)
RESNET_HEAD = Recipe(lr=3e-4, batch_size=8, l2=0.0, patience=1, qk_batchnorm=True, gatta_layernorm=True)
# Not in the paper (its ResNets came pretrained): a ResNet trained from scratch here with the
# common short-budget recipe for small images (SGD with Nesterov momentum, weight decay 5e-4 as
# an L2 penalty of 2.5e-4 on weights, cosine decay over a fixed budget, batch 128, no early
# stopping). torchvision's ImageNet reference differs (no Nesterov, 1e-4, batch 256, step decay
# over 90 epochs): this one fits a budget of tens of epochs on 64 px pictures.
RESNET_BACKBONE = Recipe(lr=0.1, batch_size=128, l2=2.5e-4, patience=None, optimizer="sgd", schedule="cosine")
RESNET_BACKBONE_EPOCHS = 30  # the default budget the cosine schedule spans
FINETUNE_LR_FACTOR = 0.1

DEFAULT_VAL_SIZE = 5000  # held-out validation images (seeded, stratified)
DEFAULT_SPLIT_SEED = 0


def recipe(stage: str, backbone: str) -> Recipe:
    """The defaults for ``stage`` (backbone, head, joint, finetune-backbone) on ``backbone``, from
    its family's description (model/families/)."""
    from .families import family_of

    family = family_of(backbone)
    head = family.head_recipe
    if stage == "backbone":
        return family.backbone_recipe
    if stage == "head":
        return head
    if stage == "joint":
        return replace(head, lr=head.lr * FINETUNE_LR_FACTOR, patience=None)
    if stage == "finetune-backbone":
        # The continuation control: the backbone's own recipe at a 10x lower, constant rate, over
        # a fixed budget. On the toy this is the head's Adam 1e-4, batch 128, no L2 (as before);
        # on a ResNet it is SGD 0.01, batch 128, weight decay (not the head's batch of 8).
        own = family.backbone_recipe
        return replace(own, lr=round(own.lr * FINETUNE_LR_FACTOR, 12), patience=None, schedule="constant")
    raise ValueError(f"unknown training stage {stage!r}")


def head_config(backbone: str, **fields) -> GattaConfig:
    """A model config with the head recipe of ``backbone``'s family (ImageNet-style families: the
    paper's batch norm on keys/queries and layer norm on gatta) and its key size d (toy 16, the
    others 8). ``fields`` set anything else (num_classes, image_size...) or override these."""
    from .families import family_of

    family = family_of(backbone)
    rules = family.head_recipe
    return GattaConfig(**{"backbone": backbone, "d": family.d,
                          "qk_batchnorm": rules.qk_batchnorm, "gatta_layernorm": rules.gatta_layernorm, **fields})


# -- named recipes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class NamedRecipe:
    """A whole run's settings under one name: the values of ``gatta-train`` options (by their
    parameter names) that make the run what it is. ``--recipe NAME`` applies them; an option given
    on the command line overrides its single value, and the checkpoint records both."""

    name: str
    stage: str  # the gatta-train command it is for: backbone, head or finetune
    what: str  # one line for `gatta-train recipes`
    settings: dict  # every recipe names its augmentation (training/augment.py), held or streamed alike


def _named(*recipes: NamedRecipe) -> dict[str, NamedRecipe]:
    return {r.name: r for r in recipes}


RECIPES = _named(
    NamedRecipe("paper-toy-backbone", "backbone", "the paper's toy CNN: Adam 1e-3 constant, batch 128, "
                "rotation/shift/flip, early stopping with patience 50, at most 500 epochs",
                {"backbone": "toy", "epochs": 500, "patience": 50, "lr_schedule": "constant",
                 "augmentation": "shift-rotate-flip"}),
    NamedRecipe("shipped-toy-backbone", "backbone", "the shipped CIFAR-10 backbone: the paper's, with the rate "
                "decayed to 0 on a cosine over 150 epochs (run to the end), fp32",
                {"backbone": "toy", "epochs": 150, "patience": 150, "lr_schedule": "cosine", "precision": "fp32",
                 "augmentation": "shift-rotate-flip"}),
    NamedRecipe("paper-toy-head", "head", "the paper's d=16 toy head: Adam 1e-3, L2 1e-5 on K/Q, batch 128, "
                "dropout 0.25 on keys/queries, patience 500, at most 500 epochs",
                {"d": 16, "epochs": 500, "patience": 500, "augmentation": "shift-rotate-flip"}),
    NamedRecipe("shipped-toy-head", "head", "the shipped CIFAR-10 head: the paper's d=16 toy head, fp32, at most "
                "100 epochs, patience 30 (the paper: 500)",
                {"d": 16, "epochs": 100, "patience": 30, "precision": "fp32", "augmentation": "shift-rotate-flip"}),
    NamedRecipe("paper-resnet-head", "head", "the paper's ResNet head: d=8, Adam 3e-4, batch 8, batch norm on "
                "keys/queries, layer norm on gatta, dropout 0.25, patience 1, at most 10 epochs, fp32",
                {"d": 8, "epochs": 10, "patience": 1, "precision": "fp32", "augmentation": "random-resized-crop"}),
    NamedRecipe("tiny-imagenet-backbone", "backbone", "the shipped Tiny-ImageNet backbone: ResNet18 from "
                "scratch at 64 px (whole picture at evaluation), SGD + Nesterov 0.1, batch 128, weight decay "
                "5e-4, random-resized crop + flip, cosine over 8 epochs, 10,000-picture selection split",
                {"backbone": "resnet18", "image_size": 64, "crop_pct": 1.0, "epochs": 8, "val_size": 10000,
                 "data_mode": "stream", "precision": "fp32", "augmentation": "random-resized-crop"}),
    NamedRecipe("tiny-imagenet-head", "head", "the shipped Tiny-ImageNet head: the paper's ResNet head with "
                "at most 2 epochs (the budget that ended it), streamed",
                {"d": 8, "epochs": 2, "patience": 1, "data_mode": "stream", "precision": "fp32",
                 "augmentation": "random-resized-crop"}),
    NamedRecipe("toy-continuation", "finetune", "the continuation control on the toy: the backbone alone 8 more "
                "epochs at 1e-4 (Adam, batch 128), the head kept",
                {"what": "backbone", "epochs": 8, "lr": 1e-4, "augmentation": "shift-rotate-flip"}),
    NamedRecipe("tiny-imagenet-continuation", "finetune", "the continuation control on the Tiny-ImageNet pair: "
                "the backbone alone 2 more epochs (the head's) at SGD 0.01 constant, the head kept",
                {"what": "backbone", "epochs": 2, "data_mode": "stream", "precision": "fp32",
                 "augmentation": "random-resized-crop"}),
    NamedRecipe("tiny-imagenet-backbone-80", "backbone", "the stronger Tiny-ImageNet backbone: as "
                "tiny-imagenet-backbone over 80 epochs, bf16 autocast",
                {"backbone": "resnet18", "image_size": 64, "crop_pct": 1.0, "epochs": 80, "val_size": 10000,
                 "data_mode": "stream", "precision": "bf16", "augmentation": "random-resized-crop"}),
)


def named_recipe(name: str, stage: str) -> NamedRecipe:
    """The recipe called ``name`` for a ``stage`` run; an unknown or mismatched one is one line."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)} (gatta-train recipes)")
    found = RECIPES[name]
    if found.stage != stage:
        raise ValueError(f"recipe {name!r} is for gatta-train {found.stage}, not {stage}")
    return found
