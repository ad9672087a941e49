"""export/cpu_layout.py: the modulation's broadcast spelled out so that ONNX Runtime keeps it in
its blocked CPU layout, only where it does, and exact either way."""

import collections

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from gatta.export import cpu_layout


def _graph(hidden: int = 32, activation: str = "Relu") -> onnx.ModelProto:
    """image -> Conv(3->16) -> Conv(16->hidden) -> activation = x; x * (1 + s), s a [B, 1, 8, 8]
    input (the agreement map's shape); then a MaxPool, as in the toy model's second pass."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(16, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(hidden, 16, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.ones((), np.float32), "one")]
    nodes = [helper.make_node("Conv", ["image", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node(activation, ["c2"], ["x"], name="activation"),
             helper.make_node("Add", ["s", "one"], ["scale"], name="one_plus"),
             helper.make_node("Mul", ["x", "scale"], ["y"], name="modulate"),
             helper.make_node("MaxPool", ["y"], ["out"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8]),
                     helper.make_tensor_value_info("s", TensorProto.FLOAT, ["s_batch", 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", hidden, 4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _optimised_ops(path, tmp_path) -> collections.Counter:
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)


def _blocked_kernels_here(tmp_path) -> bool:
    """Whether this CPU's ONNX Runtime has NCHWc kernels (x86 with AVX2 or better)."""
    path = tmp_path / "probe.onnx"
    onnx.save(_graph(), str(path))
    ops = _optimised_ops(path, tmp_path)
    return ops["ReorderInput"] + ops["ReorderOutput"] > 0


def _run(graph, path, image, s):
    onnx.save(graph, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": image, "s": s})[0]


def test_expanded_modulation_is_exact_and_stays_blocked(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.random((3, 3, 8, 8), dtype=np.float32)
    s = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    plain = _run(_graph(), tmp_path / "plain.onnx", image, s)

    graph = _graph()
    expanded = cpu_layout.modulate_in_blocked_layout(graph)
    assert list(expanded) == ["modulate"]
    ones = [t for t in graph.graph.initializer if t.name.startswith("gatta_expand_ones_")]
    assert [tuple(t.dims) for t in ones] == [(32, 1, 1, 1)] and (numpy_helper.to_array(ones[0]) == 1).all()
    path = tmp_path / "expanded.onnx"
    onnx.save(graph, str(path))
    blocked = cpu_layout.blocked_in_onnxruntime(path, expanded)
    if _blocked_kernels_here(tmp_path):
        assert blocked == {"modulate"}
        ops = _optimised_ops(path, tmp_path)
        # the map never leaves the layout: only the pooled output is reordered back
        assert ops["ReorderInput"] == 0 and ops["ReorderOutput"] == 1, ops
    # a product by a copied value: bit for bit the broadcast's answer
    assert np.array_equal(_run(graph, path, image, s), plain)


def test_expansion_is_undone_where_the_map_is_not_blocked(tmp_path):
    # the map comes from an operator with no blocked kernel (Abs; a Relu would be fused into
    # conv2): it is in plain NCHW, so an expanded Mul would only add a convolution
    rng = np.random.default_rng(2)
    image = rng.random((2, 3, 8, 8), dtype=np.float32)
    s = rng.normal(size=(1, 1, 8, 8)).astype(np.float32)  # a [1, ...] scale broadcasts over the batch
    plain = _run(_graph(activation="Abs"), tmp_path / "plain.onnx", image, s)
    graph = _graph(activation="Abs")
    expanded = cpu_layout.modulate_in_blocked_layout(graph)
    path = tmp_path / "expanded.onnx"
    onnx.save(graph, str(path))
    assert list(expanded) == ["modulate"]
    blocked = cpu_layout.blocked_in_onnxruntime(path, expanded)
    assert blocked == set()  # here because the map is not blocked, elsewhere for want of NCHWc kernels
    if _blocked_kernels_here(tmp_path):
        ops = _optimised_ops(path, tmp_path)
        assert ops["ReorderOutput"] > 0, ops  # conv2 is blocked, the map is not
    cpu_layout.undo_expansions(graph, set(expanded) - blocked, expanded)
    assert [n.op_type for n in graph.graph.node].count("Conv") == 2
    assert not [t for t in graph.graph.initializer if t.name.startswith("gatta_expand_ones_")]
    assert not [v for v in graph.graph.value_info if v.name == "scale_expanded"]
    assert np.array_equal(_run(graph, tmp_path / "undone.onnx", image, s), plain)
    onnx.checker.check_model(graph, full_check=True)
