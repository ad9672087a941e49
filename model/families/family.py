"""What one backbone family is (:class:`Family`), and the generic way to build a member: the
whole classifier is built, a user's weights are loaded into it under the builder's own names,
then the graph is cut at the attach rule's nodes (:mod:`gatta.model.attach`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gatta.decoder import Preprocessing

from .. import attach
from ..backbones import StagedBackbone
from ..config import IMAGENET_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, imagenet_preprocessing
from ..recipe import RESNET_BACKBONE, RESNET_BACKBONE_EPOCHS, RESNET_HEAD, Recipe


class UnknownBackbone(ValueError):
    """A backbone name no family knows; the message lists the known ones."""


class WeightsError(ValueError):
    """A user's state dict that cannot be loaded into the backbone; the message names the file."""


@dataclass(frozen=True)
class Family:
    """One family of CNNs, described once. ``member`` tells whether a backbone name is one of
    ours; ``make`` builds the whole classifier (random weights, ``num_classes`` outputs)."""

    name: str
    title: str  # as the docs and error messages name it
    source: str  # where the builders come from: torchvision, timm, or this project
    member: Callable[[str], bool]
    members: Callable[[], list[str]]  # the names to list (timm: none; any timm:NAME that traces)
    make: Callable[[str, int], nn.Module] | None = None
    trunk: Callable[[nn.Module], list[str]] | None = None  # module names run before pooling, in order
    stem: str | None = None  # the stem's last module (None: none; rule 1 takes the last at stride 2)
    classifier: Callable[[nn.Module], str] = lambda net: "fc"  # state-dict prefix of the final linear layer
    tracer_leaf: Callable[[nn.Module], bool] | None = None  # extra modules fx keeps whole (timm's)
    autowrap: Callable[[], tuple] = tuple  # functions fx records as calls (timm's)
    # a hand-built staged backbone instead of the fx cut: (name, classes, image size, weights).
    # The toy model; and ResNet, whose checkpoints keep the layout they were written with
    custom: Callable[..., StagedBackbone] | None = None
    # preprocessing of the published weights' evaluation transform: (name) -> Preprocessing
    weights_preprocessing: Callable[[str], Preprocessing] | None = None
    # the published weights' class names in output order: (name) -> list (gatta.model.classes
    # maps a photo folder's classes into them); None: no published weights
    categories: Callable[[str], list[str]] | None = None
    image_size: int = 224  # input side of a backbone trained here from scratch
    data_normalisation: bool = False  # from-scratch runs normalise with the data's statistics (toy)
    augmentation: str = "random-resized-crop"  # or "shift-rotate-flip", the paper's toy augmentation
    backbone_recipe: Recipe = RESNET_BACKBONE  # from scratch (not in the paper for these families)
    backbone_epochs: int = RESNET_BACKBONE_EPOCHS  # the default budget
    head_recipe: Recipe = RESNET_HEAD  # the paper's ResNet head recipe
    d: int = 8  # the paper's d for ResNets (its Table 1 also has 16)
    cpu_head_bf16: bool = False  # --precision auto trains the head in bf16 on a CPU (measured: toy only)
    notes: str = ""  # why this family's nodes are what they are (docs/backbones.md)
    examples: tuple[str, ...] = field(default=())  # members the tests and docs use

    def has(self, backbone: str) -> bool:
        return self.member(backbone)

    def members_text(self) -> str:
        names = self.members()
        return ", ".join(names) if names else "timm:NAME (any timm model with feature_info)"

    # -- building ----------------------------------------------------------------------------
    def build(self, backbone: str, num_classes: int, image_size: int, weights: str | Path | None = None) -> StagedBackbone:
        if self.custom is not None:
            return self.custom(backbone, num_classes, image_size, weights)
        net = self.make(backbone, num_classes)
        if weights is not None:
            load_state_dict_file(net, weights, backbone.removeprefix("timm:"), self.classifier(net), self.source)
        for module in net.modules():  # an in-place activation right after a cut would overwrite the read map
            if getattr(module, "inplace", False) is True:
                module.inplace = False
        net.eval()
        trunk = self.trunk(net)
        gm = attach.trace(net, trunk, self.tracer_leaf, self.autowrap())
        nodes = attach.pick_nodes(gm, trunk, self.stem)
        stages = attach.cut(gm, nodes)
        names = [n.target.replace(".", "_") for n in nodes[:-2]] + ["pre_logits", "logits"]
        return StagedBackbone(stages, names)

    def classifier_width(self, backbone: str, weights: str | Path) -> int | None:
        """How many classes the state dict ``weights`` of ``backbone`` answers with (its final
        linear layer's outputs); None when it has no such layer."""
        if self.make is None:
            return None
        with torch.device("meta"):  # the layer names only: no memory, no initialisation
            net = self.make(backbone, 1000)
        fc = read_state_dict(weights, backbone.removeprefix("timm:"), self.source).get(self.classifier(net) + ".weight")
        return int(fc.shape[0]) if fc is not None else None

    def preprocessing(self, backbone: str, image_size: int | None = None, crop_pct: float | None = None) -> Preprocessing:
        """The evaluation transform of a pretrained member (its published weights' own numbers,
        overridable), or of one trained here at ``image_size``."""
        if self.weights_preprocessing is not None and image_size is None:
            prep = self.weights_preprocessing(backbone)
            if crop_pct is None:
                return prep
            return Preprocessing(**{**prep.to_dict(), "crop_pct": crop_pct})
        return imagenet_preprocessing(image_size or self.image_size, crop_pct or IMAGENET_CROP_PCT)


@functools.lru_cache(maxsize=None)
def _torchvision_classifiers() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def torchvision_family(pattern: Callable[[str], bool]) -> dict:
    """``member`` and ``members`` of a torchvision family: its classification builders whose names
    match ``pattern`` (``resnet19`` matches ResNet's pattern but is no builder, so no member)."""
    return {"member": lambda name: pattern(name) and name in _torchvision_classifiers(),
            "members": lambda: [n for n in _torchvision_classifiers() if pattern(n)],
            "categories": torchvision_categories}


def torchvision_categories(backbone: str) -> list[str]:
    """The class names of torchvision's DEFAULT weights of ``backbone`` (ImageNet-1k's), from its
    weights table: nothing is downloaded."""
    import torchvision

    return list(torchvision.models.get_model_weights(backbone).DEFAULT.meta["categories"])


def torchvision_make(backbone: str, num_classes: int) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(backbone, weights=None, num_classes=num_classes)


def torchvision_preprocessing(backbone: str) -> Preprocessing:
    """What torchvision's DEFAULT weights of ``backbone`` evaluate with (read from its weights
    table: nothing is downloaded): resize the shorter side, centre crop, interpolation, mean/std."""
    import torchvision

    t = torchvision.models.get_model_weights(backbone).DEFAULT.transforms()
    crop, resize = t.crop_size[0], t.resize_size[0]
    return Preprocessing(crop, resize="crop", crop_pct=round(crop / resize, 4),
                         interpolation=t.interpolation.value, mean=tuple(t.mean), std=tuple(t.std))


def children_of(*containers: str, before: tuple[str, ...] = ()) -> Callable[[nn.Module], list[str]]:
    """A trunk: the modules ``before`` then the children of each container, in order."""
    return lambda net: attach.expand_trunk(net, (*before, *(f"{c}.*" for c in containers)))


def read_state_dict(weights: str | Path, backbone: str, source: str = "torchvision") -> dict:
    """A local state dict (``torch.save(model.state_dict())``; a ``{"state_dict": ...}`` or
    ``{"model": ...}`` wrapper is unwrapped); one-line errors naming the file."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{weights}: no such file") from None
    except Exception as exc:  # truncated, foreign, or a pickle that would run code
        raise WeightsError(f"{weights}: cannot read a state dict (not a file written by torch.save(model.state_dict()), "
                           f"or truncated: {type(exc).__name__})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise WeightsError(f"{weights}: not a {source} {backbone} state dict (a {type(state).__name__})")
    return state


def load_state_dict_file(net: nn.Module, weights: str | Path, backbone: str, classifier: str,
                         source: str = "torchvision") -> None:
    """A local state dict (:func:`read_state_dict`), loaded strictly. Its classifier must have the
    model's number of classes: a frozen backbone with a re-initialised classifier would classify
    at chance."""
    state = read_state_dict(weights, backbone, source)
    ours = net.state_dict()
    fc, fc_ours = state.get(classifier + ".weight"), ours.get(classifier + ".weight")
    if fc is not None and fc_ours is not None and tuple(fc.shape) != tuple(fc_ours.shape):
        raise WeightsError(f"{weights}: its classifier ({classifier}) has {fc.shape[0]} classes, the model "
                           f"{fc_ours.shape[0]}; train on data with the weights' classes (ImageNet: 1000, or class folders named by them: --class-map)")
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    if missing or unexpected:
        parts = ([f"{len(missing)} missing, first {missing[0]}"] if missing else []) + \
                ([f"{len(unexpected)} unexpected, first {unexpected[0]}"] if unexpected else [])
        raise WeightsError(f"{weights}: not a {source} {backbone} state dict ({'; '.join(parts)})")
    for key, value in state.items():
        if tuple(value.shape) != tuple(ours[key].shape):
            raise WeightsError(f"{weights}: not a {source} {backbone} state dict ({key} has shape {tuple(value.shape)}, "
                               f"{backbone} {tuple(ours[key].shape)})")
    net.load_state_dict(state)


__all__ = ["Family", "UnknownBackbone", "WeightsError", "children_of", "load_state_dict_file", "read_state_dict",
           "torchvision_categories", "torchvision_family", "torchvision_make", "torchvision_preprocessing",
           "IMAGENET_MEAN", "IMAGENET_STD"]
