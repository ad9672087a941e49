"""torchvision's DenseNet: ``features`` runs conv0-norm0-relu0 (the stride-2 stem), pool0, then
dense blocks with transitions (each transition halves the map); the forward applies a ReLU,
pools and flattens before ``classifier``."""

from .family import Family, children_of, torchvision_family, torchvision_make, torchvision_preprocessing


def pattern(name: str) -> bool:
    return name.startswith("densenet")


FAMILY = Family(
    name="densenet", title="DenseNet", source="torchvision",
    **torchvision_family(pattern), make=torchvision_make,
    trunk=children_of("features"), stem="features.relu0", classifier=lambda net: "classifier",
    weights_preprocessing=torchvision_preprocessing,
    notes="the stem relu0 (before pool0), denseblock1-3 (denseblock4 is the last stage), the pooled vector, the logits",
    examples=("densenet121",),
)
