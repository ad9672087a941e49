"""torchvision's VGG with batch norm (vgg11_bn ... vgg19_bn). VGG has no stride-2 stem: its first
tap is the last ReLU at stride 2 (before the second max-pool), then the last ReLU at strides 4
and 8; the stride-16 block is the last stage. Its classifier has two hidden layers of 4096: the
pre-logits vector is the second one's ReLU (``classifier.4``), as the toy model's dense-256."""

from .family import Family, children_of, torchvision_family, torchvision_make, torchvision_preprocessing


def pattern(name: str) -> bool:
    return name.startswith("vgg") and name.endswith("_bn")


FAMILY = Family(
    name="vgg", title="VGG with batch norm", source="torchvision",
    **torchvision_family(pattern), make=torchvision_make,
    trunk=children_of("features"), stem=None, classifier=lambda net: "classifier.6",
    weights_preprocessing=torchvision_preprocessing,
    notes="no stem: the last ReLU at strides 2, 4, 8 (stride 16 is the last stage), the second hidden layer, the logits",
    examples=("vgg11_bn",),
)
