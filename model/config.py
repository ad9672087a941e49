"""The model's description, saved inside every checkpoint; export rebuilds the model from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from gatta.decoder import Preprocessing

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's ResNet evaluation transform: resize the shorter side to 256, centre crop 224
IMAGENET_CROP_PCT = 0.875


def imagenet_preprocessing(image_size: int = 224, crop_pct: float = IMAGENET_CROP_PCT) -> Preprocessing:
    """What torchvision's ImageNet weights expect: shorter side to int(size / crop_pct),
    centre crop, bilinear, ImageNet mean/std (docs/export.md: why 0.875)."""
    return Preprocessing(image_size, resize="crop", crop_pct=crop_pct, interpolation="bilinear",
                         mean=IMAGENET_MEAN, std=IMAGENET_STD)


@dataclass
class GattaConfig:
    backbone: str = "toy"  # a name its family knows (model/families/): toy, resnet18, timm:convnext_atto...
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
    # how a picture becomes the input (gatta.decoder.Preprocessing); None, as in checkpoints
    # written before it was recorded: the whole picture squashed to the square (bilinear)
    preprocessing: Preprocessing | dict | None = None

    def __post_init__(self):
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        prep = self.preprocessing
        if prep is None:
            prep = Preprocessing(self.image_size, mean=self.mean, std=self.std)
        elif isinstance(prep, dict):
            prep = Preprocessing.from_dict(prep)
        if prep.mean is None or prep.std is None:  # a record that leaves them out takes the model's
            prep = Preprocessing(**{**prep.to_dict(), "mean": self.mean, "std": self.std})
        for name, ours, theirs in (("image_size", self.image_size, prep.input_size),
                                   ("mean", self.mean, prep.mean), ("std", self.std, prep.std)):
            if ours != theirs:
                raise ValueError(f"preprocessing disagrees with the config: its {name} is "
                                 f"{list(theirs) if name != 'image_size' else theirs}, the model's "
                                 f"{list(ours) if name != 'image_size' else ours}")
        self.preprocessing = prep
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
        out["preprocessing"] = self.preprocessing.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "GattaConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return cls(**data)
