"""A trained GattaNet -> its served description (:class:`gatta.contract.ModelMetadata`).

The metadata decides every served tensor (``ModelMetadata.inputs`` / ``.outputs``), so the
ONNX export, both Triton flavours' config.pbtxt, the ensemble and (through Triton's model
config) the client all see the same names and shapes.
"""

from __future__ import annotations

from gatta.contract import LayerInfo, ModelMetadata, class_directions


def signature_for(model, baseline: bool = False) -> ModelMetadata:
    """Describe a GattaNet's served tensors. Layer names come from the model itself."""
    cfg = model.config
    layers = [LayerInfo(t.name, t.kind, list(t.map_shape)) for t in model.taps]
    class_keys = None
    if not baseline:
        head = model.head
        class_keys = class_directions(head.effective_keys(-1), head.alpha[-1].item()).cpu().numpy()
        # alpha tells a reader of the gatta maps which way agreement moves each layer's units
        for layer, alpha in zip(layers, head.alpha.tolist()):
            layer.alpha = alpha
    return ModelMetadata(image_size=cfg.image_size, d=cfg.d, labels=list(cfg.class_names), layers=layers,
                         baseline=baseline, class_keys=class_keys, preprocessing=cfg.preprocessing)
