"""timm models, by ``timm:NAME`` (timm is an optional extra: ``pip install 'gattanet[timm]'``;
weights from a local file only). The trunk is timm's own ``feature_info`` (the modules it
reports at each reduction) and the tracer keeps timm's registered leaf modules and functions
whole, as timm's ``create_feature_extractor`` does; the rule then picks from those: the feature
at reduction 2 (ResNet's act1; EfficientNet's first block), those at 4, 8, 16 but not the last,
the input of ``get_classifier()`` (timm's ``pre_logits``) and the logits. Preprocessing comes
from the model's ``pretrained_cfg``."""

from __future__ import annotations

from torch import nn

from gatta.decoder import Preprocessing

from .family import Family

PREFIX = "timm:"


def _timm():
    try:
        import timm
    except ImportError:
        raise ValueError("timm backbones need timm: pip install 'gattanet[timm]'") from None
    return timm


def make(backbone: str, num_classes: int) -> nn.Module:
    timm = _timm()
    name = backbone[len(PREFIX):]
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r} (timm {timm.__version__}; timm.list_models() lists them)")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def trunk(net: nn.Module) -> list[str]:
    return [info["module"] for info in net.feature_info]


def classifier(net: nn.Module) -> str:
    head = net.get_classifier()
    return next(name for name, module in net.named_modules() if module is head)


def leaf(module: nn.Module) -> bool:
    from timm.layers import get_notrace_modules

    return type(module) in set(get_notrace_modules())


def autowrap() -> tuple:
    from timm.layers import get_notrace_functions

    return tuple(f for f in get_notrace_functions() if callable(f))


def preprocessing(backbone: str) -> Preprocessing:
    cfg = _timm().get_pretrained_cfg(backbone[len(PREFIX):].split(".")[0])
    cfg = cfg.to_dict() if cfg is not None else {}
    size = cfg.get("input_size", (3, 224, 224))[-1]
    interpolation = cfg.get("interpolation", "bicubic")
    return Preprocessing(size, resize="crop", crop_pct=float(cfg.get("crop_pct", 0.875)),
                         interpolation=interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bicubic",
                         mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))), std=tuple(cfg.get("std", (0.229, 0.224, 0.225))))


def categories(backbone: str) -> list[str] | None:
    """ImageNet-1k's class names for a model whose pretrained config has 1000 classes."""
    from ..classes import imagenet_categories

    cfg = _timm().get_pretrained_cfg(backbone[len(PREFIX):].split(".")[0])
    return imagenet_categories() if getattr(cfg, "num_classes", 1000) == 1000 else None


FAMILY = Family(
    name="timm", title="timm", source="timm",
    member=lambda name: name.startswith(PREFIX), members=lambda: [], make=make, trunk=trunk, stem=None,
    classifier=classifier, tracer_leaf=leaf, autowrap=autowrap, weights_preprocessing=preprocessing,
    categories=categories,
    notes="timm's feature_info modules at reductions 2, 4, 8, 16 (not the last), the classifier's input, the logits",
    examples=("timm:resnet18", "timm:convnext_atto", "timm:efficientnet_b0"),
)
