"""The served model's tensor contract, described once and used by the ONNX export, both
Triton flavours' config.pbtxt, the ensemble and (through Triton's metadata) the client."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton data type without the TYPE_ prefix: FP32, BYTES
    dims: tuple[int, ...]  # per-image shape (the batch axis is implicit)
    optional: bool = False  # may the caller leave it out?


@dataclass
class ModelSignature:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[str]
    layers: list[dict] = field(default_factory=list)  # name, kind, map shape per attached layer
    image_size: int = 32
    d: int = 0
    baseline: bool = False
    class_keys: list[list[float]] = field(default_factory=list)  # logits-layer key directions

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


def signature_for(model, baseline: bool = False) -> ModelSignature:
    """Describe a GattaNet's served tensors. Layer names come from the model itself."""
    cfg = model.config
    size = cfg.image_size
    inputs = [TensorSpec("image", "FP32", (3, size, size))]
    outputs = [TensorSpec("logits", "FP32", (cfg.num_classes,)), TensorSpec("probs", "FP32", (cfg.num_classes,))]
    layers = [{"name": t.name, "kind": t.kind, "shape": list(t.map_shape)} for t in model.taps]
    class_keys: list[list[float]] = []
    if not baseline:
        inputs += [TensorSpec("lesion_mask", "FP32", (len(model.taps),), optional=True),
                   TensorSpec("query_bias", "FP32", (cfg.d,), optional=True)]
        outputs.append(TensorSpec("q_avg", "FP32", (cfg.d,)))
        outputs += [TensorSpec(f"gatta_{t.name}", "FP32", tuple(t.map_shape)) for t in model.taps]
        # Row c: the direction in query space that raises class c's modulated logit. The
        # logits layer's key K[c] moves class c's agreement; whether more agreement amplifies
        # or damps the logit depends on the sign of that layer's alpha, so it is folded in
        # here. A client adding s * dir[c] / |dir[c]|^2 to q_avg (query_bias) favours class c.
        sign = 1.0 if model.head.alpha[-1].item() >= 0 else -1.0
        class_keys = (sign * model.head.keys[-1].weight.detach().t()).tolist()
        # alpha tells a reader of the gatta maps which way agreement moves each layer's units
        for layer, alpha in zip(layers, model.head.alpha.tolist()):
            layer["alpha"] = alpha
    return ModelSignature(inputs, outputs, list(cfg.class_names), layers, size, cfg.d, baseline, class_keys)
