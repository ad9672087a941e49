"""torchvision's EfficientNet (B0-B7) and EfficientNetV2 (S/M/L): ``features.0`` is the stride-2
stem, each later ``features.N`` a stage of MBConv/FusedMBConv blocks; ``features.8`` (or the
last) is the 1x1 head conv at stride 32."""

from .family import Family, children_of, torchvision_family, torchvision_make, torchvision_preprocessing


def pattern(name: str) -> bool:
    return name.startswith("efficientnet_")


FAMILY = Family(
    name="efficientnet", title="EfficientNet (v1, v2)", source="torchvision",
    **torchvision_family(pattern), make=torchvision_make,
    trunk=children_of("features"), stem="features.0", classifier=lambda net: "classifier.1",
    weights_preprocessing=torchvision_preprocessing,
    notes="the stem features.0, the last stage at strides 4, 8, 16, the pooled vector, the logits",
    examples=("efficientnet_b0",),
)
