"""Checkpoint model -> one static ONNX graph with both passes (and every attention step)
unrolled, named tensors, a dynamic batch axis and overridable defaults for the optional
inputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from gatta import contract
from gatta.contract import ModelMetadata

from . import cpu_layout

LAYOUTS = ("cpu", "gpu")


class ServedGatta(nn.Module):
    """image (+ lesion_mask, query_bias) -> logits, probs, q_avg, gatta_<layer>..."""

    def __init__(self, model, fp16: bool = False):
        super().__init__()
        self.model = model.half() if fp16 else model
        self.fp16 = fp16

    def forward(self, image, lesion_mask, query_bias):
        if not self.fp16:  # no Cast nodes: each would copy its tensor on every run
            out = self.model(image, lesion_mask=lesion_mask, query_bias=query_bias, return_maps=True)
            return (out.logits, torch.softmax(out.logits, 1), out.q_avg, *out.gatta.values())
        half = torch.float16
        out = self.model(image.to(half), lesion_mask=lesion_mask.to(half), query_bias=query_bias.to(half),
                         return_maps=True)
        tensors = (out.logits, torch.softmax(out.logits.float(), 1), out.q_avg, *out.gatta.values())
        return tuple(t.float() for t in tensors)


class ServedBaseline(nn.Module):
    """The frozen backbone alone, same input contract for ``image``: logits, probs."""

    def __init__(self, model, fp16: bool = False):
        super().__init__()
        self.model = model.half() if fp16 else model
        self.fp16 = fp16

    def forward(self, image):
        if not self.fp16:
            logits = self.model.forward_backbone(image)
            return logits, torch.softmax(logits, 1)
        logits = self.model.forward_backbone(image.to(torch.float16)).float()
        return logits, torch.softmax(logits, 1)


def example_inputs(signature: ModelMetadata, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """A random image batch; the optional inputs at their defaults."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in signature.inputs:
        if spec.optional:
            feeds[spec.name] = contract.default_input(spec.name, batch, spec.dims)
        else:
            feeds[spec.name] = rng.random((batch, *spec.dims), dtype=np.float32)
    return feeds


def export_onnx(model, signature: ModelMetadata, path: Path, opset: int = 17, fp16: bool = False,
                layout: str = "cpu") -> Path:
    """Trace and write ``path`` as a single file (weights inline, no ``.onnx.data``).

    ``layout="cpu"`` shapes the modulations for ONNX Runtime's blocked CPU layout
    (``cpu_layout.py``; kept only where this machine's optimiser keeps them blocked);
    ``"gpu"`` leaves them as broadcasts, one kernel each on a GPU."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    model = model.eval()
    # The wrapper must be in eval mode too: the exporter restores the wrapper's mode after
    # tracing, and a wrapper left in training mode would switch the model's dropout back on.
    module = (ServedBaseline(model, fp16) if signature.baseline else ServedGatta(model, fp16)).eval()
    feeds = example_inputs(signature)
    args = tuple(torch.from_numpy(feeds[n]) for n in signature.input_names)
    dynamic = {n: {0: "batch"} for n in signature.input_names + signature.output_names}
    # An omitted optional input is its [1, ...] default, broadcast over the batch: it gets a
    # batch axis of its own. Sharing "batch" with the image told ONNX Runtime's planner that a
    # [1, L] default and a [B, classes] output have one shape when L == classes, and it re-used
    # one's buffer for the other ("Shape mismatch attempting to re-use buffer").
    for spec in signature.optional_inputs:
        dynamic[spec.name] = {0: f"{spec.name}_batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, args, str(path), input_names=signature.input_names,
                          output_names=signature.output_names, dynamic_axes=dynamic,
                          opset_version=opset, dynamo=False, external_data=False,
                          do_constant_folding=True)
    graph = onnx.load(str(path))
    _add_input_defaults(graph, signature)
    blocked: set[str] = set()
    if layout == "cpu" and not fp16:  # the blocked layout is FP32 only
        expanded = cpu_layout.modulate_in_blocked_layout(graph)
        if expanded:
            onnx.save(graph, str(path))
            blocked = cpu_layout.blocked_in_onnxruntime(path, expanded)
            cpu_layout.undo_expansions(graph, set(expanded) - blocked, expanded)
    cpu_layout.pool_modulated_maps_in_nchw(graph, skip=blocked)
    graph.doc_string = "GAttANet (global attention agreement), exported by gattanet"
    onnx.save(graph, str(path))
    return path


def _add_input_defaults(graph: onnx.ModelProto, signature: ModelMetadata) -> None:
    """An initializer that is also a graph input is an overridable default in ONNX Runtime:
    callers may omit ``lesion_mask`` (ones [1, L]: full model) or ``query_bias`` (zeros)."""
    for spec in signature.optional_inputs:
        graph.graph.initializer.append(numpy_helper.from_array(contract.default_input(spec.name, 1, spec.dims),
                                                               spec.name))


def check_onnx(path: Path) -> onnx.ModelProto:
    """onnx.checker (full) and strict shape inference; raises on any failure."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return model
