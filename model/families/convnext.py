"""torchvision's ConvNeXt. Its stem is a 4x4 stride-4 patchify, so the first tap is the first
stage (``features.1``); the pre-logits vector is the pooled vector after the head's LayerNorm
(``classifier.1``, the Flatten that fc reads), as timm's ``pre_logits``."""

from .family import Family, children_of, torchvision_family, torchvision_make, torchvision_preprocessing


def pattern(name: str) -> bool:
    return name.startswith("convnext_")


FAMILY = Family(
    name="convnext", title="ConvNeXt", source="torchvision",
    **torchvision_family(pattern), make=torchvision_make,
    trunk=children_of("features"), stem="features.0", classifier=lambda net: "classifier.2",
    weights_preprocessing=torchvision_preprocessing,
    notes="stem strided 4: stages 1-3 (features.1/.3/.5), the normalised pooled vector, the logits",
    examples=("convnext_tiny",),
)
