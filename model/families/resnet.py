"""torchvision's ResNet, ResNeXt and Wide-ResNet builders: the paper's own backbones (Table 1).

The attach rule picks relu (the stem, before the max-pool), layer1, layer2, layer3, the pooled
vector and fc, Table 1's taps. The stages stay hand-built as they were before the rule was
general (``stem``, ``layer1``..``avgpool``, ``logits``), so that checkpoints written since then
load unchanged; a test checks that the rule's fx cut picks the same nodes and computes the same."""

from torch import nn

from ..backbones import RESNET_TAPS, StagedBackbone
from .family import Family, children_of, load_state_dict_file, torchvision_family, torchvision_make, \
    torchvision_preprocessing

PREFIXES = ("resnet", "resnext", "wide_resnet")


def build(backbone: str, num_classes: int, image_size: int, weights=None) -> StagedBackbone:
    net = torchvision_make(backbone, num_classes)
    if weights is not None:
        load_state_dict_file(net, weights, backbone, "fc")
    stages = [
        nn.Sequential(net.conv1, net.bn1, net.relu),
        nn.Sequential(net.maxpool, net.layer1),
        net.layer2,
        net.layer3,
        nn.Sequential(net.layer4, net.avgpool, nn.Flatten()),
        net.fc,
    ]
    return StagedBackbone(stages, RESNET_TAPS)


def pattern(name: str) -> bool:
    return name.startswith(PREFIXES)


FAMILY = Family(
    name="resnet", title="ResNet / ResNeXt / Wide-ResNet", source="torchvision",
    **torchvision_family(pattern), make=torchvision_make, custom=build,
    trunk=children_of(before=("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")),
    stem="relu", classifier=lambda net: "fc", weights_preprocessing=torchvision_preprocessing,
    notes="Table 1's taps: the stem before the max-pool, layer1-3 (layer4 is the last stage), the pooled vector, fc",
    examples=("resnet18",),
)
