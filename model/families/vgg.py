"""torchvision's VGG with batch norm (vgg11_bn ... vgg19_bn). VGG has no stride-2 stem: its first
tap is the last ReLU at stride 2 (before the second max-pool), then the last ReLU at strides 4
and 8; the stride-16 block is the last stage. Its classifier has two hidden layers of 4096: the
pre-logits vector is the second one's ReLU (``classifier.4``), as the toy model's dense-256.

Its ``AdaptiveAvgPool2d((7, 7))`` is replaced by :class:`FixedSizePool`, the same averages
written as two constant matrices for the map size it meets: torch's ONNX exporter writes an
adaptive pool only where it knows the map's size, and in GAttANet's second pass it does not."""

import torch
from torch import nn

from .family import Family, children_of, torchvision_family, torchvision_make, torchvision_preprocessing


def pattern(name: str) -> bool:
    return name.startswith("vgg") and name.endswith("_bn")


def bins(size: int, out: int) -> torch.Tensor:
    """[out, size]: row i averages adaptive pooling's window i, [floor(i size / out), ceil((i + 1) size / out))."""
    rows = torch.zeros(out, size)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        rows[i, start:end] = 1.0 / (end - start)
    return rows


class FixedSizePool(nn.Module):
    """``AdaptiveAvgPool2d(out)`` as ``P_h @ x @ P_w^T`` with the windows' averages as constants
    for the input size seen (the input itself where it already has the output's size: VGG at
    224 px, exactly torchvision's). A leaf for fx, so the size is read at run time."""

    def __init__(self, out: tuple[int, int]):
        super().__init__()
        self.out = tuple(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])  # constants in the exported graph: its sizes are static
        if (h, w) == self.out:
            return x
        return bins(h, self.out[0]).to(x) @ x @ bins(w, self.out[1]).to(x).t()


def make(backbone: str, num_classes: int) -> nn.Module:
    net = torchvision_make(backbone, num_classes)
    net.avgpool = FixedSizePool(net.avgpool.output_size)
    return net


FAMILY = Family(
    name="vgg", title="VGG with batch norm", source="torchvision",
    **torchvision_family(pattern), make=make,
    trunk=children_of("features"), stem=None, classifier=lambda net: "classifier.6",
    tracer_leaf=lambda module: isinstance(module, FixedSizePool),
    weights_preprocessing=torchvision_preprocessing,
    notes="no stem: the last ReLU at strides 2, 4, 8 (stride 16 is the last stage), the second hidden layer, the logits",
    examples=("vgg11_bn",),
)
