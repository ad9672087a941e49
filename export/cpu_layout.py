"""Rewrites that keep the second pass in ONNX Runtime's blocked CPU layout (NCHWc).

ONNX Runtime's CPU provider runs convolutions, pools, residual additions and their
activations in a blocked layout (NCHWc: channels in blocks of 8 or 16 innermost) and reorders
tensors in and out of it around every operator that has no blocked kernel. The second pass's
modulation ``x * (1 + gain * gatta)`` multiplies a ``[B, C, H, W]`` map by a ``[B, 1, H, W]``
agreement map broadcast over the channels, which no blocked kernel does; exported as it is,
every modulated map leaves the layout and comes back (a ReorderOutput and a ReorderInput over
the full map), and in a residual network the next block's addition and ReLU are no longer
fused into its convolution.

``modulate_in_blocked_layout`` spells the broadcast out: a 1x1 convolution with constant
weights of ones copies the one-channel scale to C channels (a blocked kernel), and the Mul then
joins two blocked tensors of one shape, which ONNX Runtime keeps blocked. It is exact (a
product by 1.0 and a copy), and the optimiser only accepts it when it can prove both factors
have the same batch axis, hence the ``batch`` labels on the scale maps: every scale map is the
agreement of the image batch times a per-image gain (a [1, L] default lesion mask broadcasts to
it), so its batch axis is the image's.

Measured (docs/performance-analysis.md, "The modulation in the blocked layout"): DenseNet-121
at 224 px 9% less time, ResNet18 and EfficientNet-B0 1-2%, the toy model within noise (about
eight passes over its maps remain, which only fusion would remove). On a GPU the expansion is
one more small kernel per map, so the exporter applies it to CPU exports only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BATCH = "batch"  # the image input's batch axis name (export_onnx's dynamic_axes)
NCHWC = "com.microsoft.nchwc"  # ONNX Runtime's domain for its blocked-layout kernels
EXPANSION = "_expand_scale"  # name suffix of the expansion convolutions


def is_expansion(node: onnx.NodeProto) -> bool:
    """Whether ``node`` is one of the ones convolutions this module inserts."""
    return node.op_type == "Conv" and node.name.endswith(EXPANSION)


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _modulations(graph: onnx.ModelProto) -> list[tuple[onnx.NodeProto, int]]:
    """Mul nodes of a [B, C, H, W] map (first input) by a [B, 1, H, W] scale (second): the
    modulations, with the map's channel count."""
    inferred = onnx.shape_inference.infer_shapes(graph)
    g = inferred.graph
    shapes = {v.name: _dims(v) for v in [*g.value_info, *g.input, *g.output]}
    found = []
    for node in graph.graph.node:
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        x, s = shapes.get(node.input[0]), shapes.get(node.input[1])
        if (x and s and len(x) == 4 and len(s) == 4 and s[1] == 1 and (x[1] or 0) > 1
                and x[2:] == s[2:] and None not in x[1:]):
            found.append((node, x[1]))
    return found


def modulate_in_blocked_layout(graph: onnx.ModelProto) -> dict[str, str]:
    """Expand every modulation's scale to the map's channels with a ones 1x1 convolution (in
    place). Returns {Mul name: name of the expansion Conv} for ``undo_expansions``."""
    nodes = list(graph.graph.node)
    weights: dict[int, str] = {}
    labels: dict[str, list[int]] = {}
    expanded: dict[str, str] = {}
    position = {id(n): i for i, n in enumerate(nodes)}
    inserts = []
    for mul, channels in _modulations(graph):
        scale = mul.input[1]
        if channels not in weights:
            weights[channels] = f"gatta_expand_ones_{channels}"
            graph.graph.initializer.append(
                numpy_helper.from_array(np.ones((channels, 1, 1, 1), np.float32), weights[channels]))
        conv = helper.make_node("Conv", [scale, weights[channels]], [f"{scale}_expanded"],
                                name=f"{mul.name}{EXPANSION}")
        inserts.append((position[id(mul)], conv))
        mul.input[1] = conv.output[0]
        expanded[mul.name] = conv.name
        labels[scale] = [1]
        labels[conv.output[0]] = [channels]
    for index, conv in sorted(inserts, key=lambda t: -t[0]):
        nodes.insert(index, conv)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    if labels:
        inferred = {v.name: _dims(v) for v in onnx.shape_inference.infer_shapes(graph).graph.value_info}
        for name, channels in labels.items():
            spatial = inferred.get(name, [None] * 4)[2:]
            graph.graph.value_info.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *channels, *spatial]))
    return expanded


def blocked_in_onnxruntime(path: Path, expanded: dict[str, str]) -> set[str]:
    """The expanded Mul nodes that ONNX Runtime's CPU optimiser kept in the blocked layout on
    this machine: those whose map input a blocked kernel writes. (Where a map's producer
    is not blocked, e.g. an operator with no blocked kernel, or a CPU without NCHWc kernels
    (ONNX Runtime has them for x86 with AVX2 or better), the expansion would only add
    work.)"""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        optimised = onnx.load(opts.optimized_model_filepath, load_external_data=False)
    # blocked: the map comes from a blocked kernel (a fused Conv, a ReorderInput...), not from
    # a ReorderOutput or a plain-layout node
    producer = {out: n for n in optimised.graph.node for out in n.output}
    blocked = set()
    for node in optimised.graph.node:
        source = producer.get(node.input[0]) if node.input else None
        if (node.name in expanded and node.op_type == "Mul" and source is not None
                and source.domain == NCHWC and source.op_type != "ReorderOutput"):
            blocked.add(node.name)
    return blocked


def undo_expansions(graph: onnx.ModelProto, muls: set[str], expanded: dict[str, str]) -> None:
    """Put the broadcast back for ``muls`` (in place)."""
    convs = {expanded[m] for m in muls}
    scale_of = {n.name: (n.input[0], n.output[0]) for n in graph.graph.node if n.name in convs}
    keep = [n for n in graph.graph.node if n.name not in convs]
    for node in keep:
        if node.name in muls:
            node.input[1] = scale_of[expanded[node.name]][0]
    del graph.graph.node[:]
    graph.graph.node.extend(keep)
    dropped = {out for _, out in scale_of.values()}
    kept_values = [v for v in graph.graph.value_info if v.name not in dropped]
    del graph.graph.value_info[:]
    graph.graph.value_info.extend(kept_values)
    used = {i for n in graph.graph.node for i in n.input}
    inits = [t for t in graph.graph.initializer if not t.name.startswith("gatta_expand_ones_") or t.name in used]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(inits)


def pool_modulated_maps_in_nchw(graph: onnx.ModelProto, skip: set[str] = frozenset()) -> int:
    """Put the layout change after the pooling that follows a modulated map, not before it.

    For a modulation left in plain NCHW (not in ``skip``, the Muls kept blocked), a MaxPool
    reading that product would get a ReorderInput on the full map. Read through
    ``Reshape(x, Shape(x))`` (the same tensor; its channel count is then unknown to the
    optimiser) the pool stays in NCHW and the reorder happens after it, on a 4x smaller
    tensor, or not at all before a Flatten. Toy model, batch 256, one thread: 3 ReorderInput ->
    2 (on pooled maps), 7 ReorderOutput -> 6, ~4% less CPU per image, identical outputs.
    Returns how many pools were rewired."""
    nodes = graph.graph.node
    producer = {out: n for n in nodes for out in n.output}
    rewired, out = 0, []
    for node in nodes:
        source = producer.get(node.input[0]) if node.input else None
        if (node.op_type in ("MaxPool", "AveragePool") and source is not None and source.op_type == "Mul"
                and source.name not in skip):
            x = node.input[0]
            shape, same = f"{x}_shape_for_pool", f"{x}_for_pool"
            out.append(onnx.helper.make_node("Shape", [x], [shape], name=f"{node.name}_input_shape"))
            out.append(onnx.helper.make_node("Reshape", [x, shape], [same], name=f"{node.name}_input"))
            node.input[0] = same
            rewired += 1
        out.append(node)
    del nodes[:]
    nodes.extend(out)
    return rewired
