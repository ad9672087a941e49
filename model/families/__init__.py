"""Every backbone family the head attaches to, each described once (timm's ``PretrainedCfg`` +
``register_model`` in spirit). A :class:`Family` says how to build a member, where the head
attaches (its trunk and stem; :mod:`gatta.model.attach` applies the rule), how a member's
pictures are prepared, which recipes and key size it trains with, and how a user's state dict
loads into it. Everything that used to be decided by a backbone's name is a lookup here.

Adding a family: one file in this folder defining ``FAMILY = Family(...)``, and one entry in
``FAMILIES`` below (docs/backbones.md, "Adding a family").
"""

from __future__ import annotations

from . import convnext, densenet, efficientnet, mobilenet, regnet, resnet, timm_models, toy, vgg
from .family import Family, UnknownBackbone

FAMILIES: tuple[Family, ...] = (toy.FAMILY, resnet.FAMILY, convnext.FAMILY, efficientnet.FAMILY, mobilenet.FAMILY,
                                regnet.FAMILY, densenet.FAMILY, vgg.FAMILY, timm_models.FAMILY)


def family_of(backbone: str) -> Family:
    """The family a backbone name belongs to; an unknown name gets one line listing what is known."""
    for family in FAMILIES:
        if family.has(backbone):
            return family
    raise UnknownBackbone(f"unknown backbone {backbone!r}; known: {known_summary()}")


def known_summary() -> str:
    """One line: every family with its members (torchvision builder names, timm:NAME)."""
    return "; ".join(f"{f.title}: {f.members_text()}" for f in FAMILIES)


def known_backbones() -> list[str]:
    """Every backbone name that can be given without a prefix (timm models take ``timm:``)."""
    return [name for f in FAMILIES for name in f.members()]


__all__ = ["FAMILIES", "Family", "UnknownBackbone", "family_of", "known_backbones", "known_summary"]
