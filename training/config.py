"""The model's description, saved inside every checkpoint; export rebuilds the model from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class GattaConfig:
    backbone: str = "toy"  # key of training.backbones.BACKBONES
    num_classes: int = 10
    class_names: list[str] = field(default_factory=list)
    image_size: int = 32  # square input side the model expects, pixels
    mean: tuple[float, float, float] = CIFAR_MEAN  # normalisation, pixels in [0, 1]
    std: tuple[float, float, float] = CIFAR_STD
    d: int = 16  # key/query dimension
    iterations: int = 1  # attention steps; 1 = the paper's two passes
    qk_dropout: float = 0.25  # training-time dropout on keys and queries
    qk_batchnorm: bool = False  # batch-norm on keys/queries (paper: ResNets)
    gatta_layernorm: bool = False  # layer-norm on gatta scores (paper: ResNets)
    alpha_init: float = 0.0  # 0: the untrained model equals its backbone exactly

    def __post_init__(self):
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if not self.class_names:
            self.class_names = [f"class_{i}" for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given for {self.num_classes} classes"
            )
        if self.d < 1 or self.iterations < 1:
            raise ValueError("d and iterations must be positive")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "GattaConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return cls(**data)
