"""torchvision's MobileNetV2 and MobileNetV3 (large, small). V3's classifier has a hidden layer
(Linear-Hardswish-Dropout-Linear): its pre-logits vector is that hidden layer's output
(``classifier.1``), not the pooled 576/960 channels, as timm's ``pre_logits`` for these models."""

from .family import Family, children_of, torchvision_family, torchvision_make, torchvision_preprocessing


def pattern(name: str) -> bool:
    return name == "mobilenet_v2" or name.startswith("mobilenet_v3_")


FAMILY = Family(
    name="mobilenet", title="MobileNetV2 / V3", source="torchvision",
    **torchvision_family(pattern), make=torchvision_make,
    trunk=children_of("features"), stem="features.0",
    classifier=lambda net: "classifier.1" if len(net.classifier) == 2 else "classifier.3",
    weights_preprocessing=torchvision_preprocessing,
    notes="the stem features.0, the last block at strides 4, 8, 16, the pre-logits vector, the logits",
    examples=("mobilenet_v3_small",),
)
