"""The paper's toy CNN (3 conv + 2 dense) and its parameter-matched control ``toy-wide``: built
here, trained here from scratch on 32 px pictures, its taps written out by hand (the paper's)."""

from ..backbones import TOY_CHANNELS, TOY_WIDE_CHANNELS, build_toy
from ..recipe import TOY_BACKBONE, TOY_HEAD
from .family import Family

CHANNELS = {"toy": TOY_CHANNELS, "toy-wide": TOY_WIDE_CHANNELS}

FAMILY = Family(
    name="toy", title="the paper's toy CNN", source="gattanet",
    member=lambda name: name in CHANNELS, members=lambda: list(CHANNELS),
    custom=lambda name, num_classes, image_size, weights=None: build_toy(num_classes, image_size,
                                                                         channels=CHANNELS[name]),
    image_size=32, data_normalisation=True, augmentation="shift-rotate-flip",
    backbone_recipe=TOY_BACKBONE, backbone_epochs=500, head_recipe=TOY_HEAD, d=16, cpu_head_bf16=True,
    notes="the paper's taps: each conv map after its ReLU (before pooling), dense-256 after its ReLU, the logits",
    examples=("toy",),
)
