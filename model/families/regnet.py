"""torchvision's RegNetX and RegNetY: a stride-2 ``stem``, then ``trunk_output.block1``-``block4``
at strides 4, 8, 16 and 32, like ResNet's layer1-4."""

from .family import Family, children_of, torchvision_family, torchvision_make, torchvision_preprocessing


def pattern(name: str) -> bool:
    return name.startswith("regnet_")


FAMILY = Family(
    name="regnet", title="RegNet (X, Y)", source="torchvision",
    **torchvision_family(pattern), make=torchvision_make,
    trunk=children_of("trunk_output", before=("stem",)), stem="stem", classifier=lambda net: "fc",
    weights_preprocessing=torchvision_preprocessing,
    notes="as ResNet: the stem, block1-3 (block4 is the last stage), the pooled vector, fc",
    examples=("regnet_x_400mf",),
)
