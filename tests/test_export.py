"""gatta-export: parity with PyTorch, the optional mask, the baseline, the repository files."""

import collections
import os

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from gatta.export import cpu_layout
from gatta.export.cli import main as export_cli
from gatta.export.exporter import ExportOptions, export_checkpoint
from gatta.export.verify import ExportError, compare, ort_session, torch_outputs
from gatta.model.checkpoint import load_checkpoint

from helpers import make_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ckpt = make_checkpoint(root / "m.pt", num_classes=4, d=8, image_size=16, alpha=0.8)
    report = export_checkpoint(ckpt, ExportOptions(out=root / "repo", flavour="both", max_batch=8))
    base = export_checkpoint(ckpt, ExportOptions(out=root / "base", name="base", baseline=True, flavour="python"))
    return root, ckpt, report, base


def test_report_figures_within_tolerance(exported):
    _, _, report, _ = exported
    worst = report.verification["worst"]
    assert set(worst) == {"logits", "probs", "q_avg", "gatta_conv1", "gatta_conv2", "gatta_conv3",
                          "gatta_dense1", "gatta_logits"}
    assert worst["logits"] <= 1e-5 and max(v for k, v in worst.items() if k != "logits") <= 1e-4


def test_onnx_runtime_matches_pytorch_with_per_image_masks(exported):
    root, ckpt, _, _ = exported
    model, _ = load_checkpoint(ckpt)
    session = ort_session(root / "repo" / "python" / "gatta" / "1" / "model.onnx")
    rng = np.random.default_rng(5)
    x = rng.random((5, 3, 16, 16), dtype=np.float32)
    masks = rng.integers(0, 2, (5, 5)).astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    for feeds in ({"image": x}, {"image": x, "lesion_mask": masks},
                  {"image": x, "lesion_mask": masks, "query_bias": rng.normal(size=(5, 8)).astype(np.float32)}):
        ref = torch_outputs(model, _sig(model), feeds)
        got = dict(zip(names, session.run(names, feeds)))
        figures = compare(ref, got, {"abs": 1e-4, "logits_rel": 1e-5})
        assert max(figures.values()) < 1e-4
    # leaving the mask out is the full model; an all-ones mask is identical
    full = session.run(["logits"], {"image": x})[0]
    ones = session.run(["logits"], {"image": x, "lesion_mask": np.ones((5, 5), np.float32)})[0]
    assert np.array_equal(full, ones)


def _sig(model):
    from gatta.export.signature import signature_for

    return signature_for(model)


def test_zero_mask_reproduces_baseline_export(exported):
    root, _, _, _ = exported
    gatta = ort_session(root / "repo" / "python" / "gatta" / "1" / "model.onnx")
    base = ort_session(root / "base" / "base" / "1" / "model.onnx")
    x = np.random.default_rng(1).random((4, 3, 16, 16), dtype=np.float32)
    lesioned = gatta.run(["logits"], {"image": x, "lesion_mask": np.zeros((4, 5), np.float32)})[0]
    baseline = base.run(["logits"], {"image": x})[0]
    assert np.abs(lesioned - baseline).max() <= 1e-5
    assert [o.name for o in base.get_outputs()] == ["logits", "probs"]
    assert np.abs(gatta.run(["logits"], {"image": x})[0] - baseline).max() > 1e-3


def test_graph_runs_the_shared_prefix_once_and_uses_no_einsum(exported):
    root, _, _, _ = exported
    graph = onnx.load(str(root / "repo" / "python" / "gatta" / "1" / "model.onnx"))
    ops = collections.Counter(n.op_type for n in graph.graph.node)
    # the 1x1 convolutions that copy a modulation's scale to the map's channels where ONNX
    # Runtime keeps the product in its blocked layout (cpu_layout.py; none without NCHWc kernels)
    expansions = [n for n in graph.graph.node if cpu_layout.is_expansion(n)]
    assert len(expansions) <= 5
    assert ops["Conv"] - len(expansions) == 5  # conv1 once, conv2 and conv3 in both passes
    assert ops["Einsum"] == 0
    # reshapes use the taps' static shapes and FP32 outputs are not re-cast: per-run node
    # overhead that batch 1 pays (one Cast of the [B, L] lesion mask remains)
    assert ops["Expand"] == 0 and ops["Cast"] <= 1
    # each of the second pass's 3 pools reads its modulated map either blocked (expanded) or
    # through Reshape(x, Shape(x)), so ONNX Runtime reorders to NCHWc after pooling; those are
    # the only Shape nodes
    producer = {out: n for n in graph.graph.node for out in n.output}
    pools = [n for n in graph.graph.node if n.op_type == "MaxPool" and n.input[0] in producer
             and producer[n.input[0]].op_type in ("Mul", "Reshape")]
    blocked = {n.name.removesuffix(cpu_layout.EXPANSION) for n in expansions}
    through_shape = [p for p in pools if producer[p.input[0]].op_type == "Reshape"]
    read_blocked = [p for p in pools if producer[p.input[0]].name in blocked]
    assert len(through_shape) + len(read_blocked) == 3, [p.name for p in pools]
    shapes = [n for n in graph.graph.node if n.op_type == "Shape"]
    assert len(shapes) == len(through_shape) and all(n.name.endswith("MaxPool_input_shape") for n in shapes)
    assert [i.name for i in graph.graph.input] == ["image", "lesion_mask", "query_bias"]
    defaults = {i.name: onnx.numpy_helper.to_array(i) for i in graph.graph.initializer
                if i.name in ("lesion_mask", "query_bias")}
    assert defaults["lesion_mask"].tolist() == [[1.0] * 5] and defaults["query_bias"].shape == (1, 8)


def test_modulated_maps_are_pooled_before_the_layout_reorder(exported, tmp_path):
    import onnxruntime as ort

    root, _, _, _ = exported
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(root / "repo" / "python" / "gatta" / "1" / "model.onnx"), opts,
                         providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node)
    # conv2 and conv3 read pooled maps reordered after pooling (3 before), none before the last pool
    # (0 where ONNX Runtime has no NCHWc kernels for this CPU)
    assert ops["ReorderInput"] <= 2, ops


def test_optimisation_levels_agree(exported):
    root, _, _, _ = exported
    path = root / "repo" / "python" / "gatta" / "1" / "model.onnx"
    x = np.random.default_rng(2).random((3, 3, 16, 16), dtype=np.float32)
    a = ort_session(path, "all").run(None, {"image": x})
    b = ort_session(path, "disable").run(None, {"image": x})
    assert max(float(np.abs(u - v).max()) for u, v in zip(a, b)) <= 1e-5


def _parse(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_repository_layout_and_configs_parse(exported):
    root, _, _, _ = exported
    for flavour in ("onnxruntime", "python"):
        repo = root / "repo" / flavour
        files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
        expected = ["gatta/1/model.onnx", "gatta/config.pbtxt", "gatta/labels.txt",
                    "gatta_encoded/config.pbtxt", "gatta_preprocess/1/model.py", "gatta_preprocess/config.pbtxt"]
        if flavour == "python":
            expected.insert(1, "gatta/1/model.py")
        assert files == sorted(expected)
        assert (repo / "gatta_encoded" / "1").is_dir()
    native = _parse(root / "repo" / "onnxruntime" / "gatta" / "config.pbtxt")
    python = _parse(root / "repo" / "python" / "gatta" / "config.pbtxt")
    assert native.platform == "onnxruntime_onnx" and python.backend == "python"
    assert native.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert python.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert native.max_batch_size == python.max_batch_size == 8
    io = lambda cfg: [(t.name, t.data_type, list(t.dims)) for t in (*cfg.input, *cfg.output)]
    assert io(native) == io(python)
    assert [(t.name, t.optional) for t in native.input] == [("image", False), ("lesion_mask", False), ("query_bias", False)]
    assert [(t.name, t.optional) for t in python.input] == [("image", False), ("lesion_mask", True), ("query_bias", True)]
    assert [list(t.dims) for t in python.output][3:] == [[16, 16], [8, 8], [4, 4], [256], [4]]
    assert native.model_warmup and native.dynamic_batching is not None
    ensemble = _parse(root / "repo" / "python" / "gatta_encoded" / "config.pbtxt")
    assert ensemble.platform == "ensemble" and [s.model_name for s in ensemble.ensemble_scheduling.step] == ["gatta_preprocess", "gatta"]
    assert [o.name for o in ensemble.output] == [o.name for o in python.output]
    pre = _parse(root / "repo" / "python" / "gatta_preprocess" / "config.pbtxt")
    assert pre.input[0].data_type == model_config_pb2.TYPE_STRING
    assert (root / "repo" / "python" / "gatta" / "labels.txt").read_text().split() == [f"class_{i}" for i in range(4)]


def test_python_backend_model_is_self_contained(exported):
    root, _, _, _ = exported
    for path in (root / "repo" / "python").rglob("model.py"):
        imports = [l.split()[1] for l in path.read_text().splitlines() if l.startswith(("import ", "from "))]
        assert not [m for m in imports if m.startswith(("gatta", "torch"))], path


def test_fp16_export_within_documented_tolerance(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=4, d=8, image_size=16)
    report = export_checkpoint(ckpt, ExportOptions(out=tmp_path / "repo", fp16=True, flavour="python", encoded=False))
    assert report.verification["tolerance"]["abs"] == 1e-2
    assert report.verification["worst"]["probs"] <= 1e-2


def test_verification_failure_reports_figures():
    ref = {"logits": np.ones((2, 3), np.float32), "probs": np.zeros((2, 3), np.float32)}
    bad = {"logits": np.ones((2, 3), np.float32) * 1.1, "probs": np.full((2, 3), 0.5, np.float32)}
    with pytest.raises(ExportError, match=r"logits 1\.00e-01 > 1e-05, probs 5\.00e-01 > 1e-04"):
        compare(ref, bad, {"abs": 1e-4, "logits_rel": 1e-5})


def _cli(*args):
    return CliRunner().invoke(export_cli, [str(a) for a in args])


def test_cli_bad_input_leaves_nothing_behind(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=4, d=8, image_size=16)
    out = tmp_path / "repo"
    r = _cli("--ckpt", tmp_path / "missing.pt", "--out", out)
    assert r.exit_code == 1 and "does not exist" in r.output and len(r.output.strip().splitlines()) == 1
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04broken")
    r = _cli("--ckpt", tmp_path / "corrupt.pt", "--out", out)
    assert r.exit_code == 1 and "not a readable checkpoint" in r.output
    r = _cli("--ckpt", ckpt, "--out", out, "--opset", "9")
    assert r.exit_code == 1 and "opset 9 is not supported" in r.output
    for flag, value in (("--instances", "0"), ("--threads", "many")):
        r = _cli("--ckpt", ckpt, "--out", out, "--flavor", "python", flag, value)
        assert r.exit_code == 2 and f"'{value}' is neither a positive count nor auto" in r.output
    (tmp_path / "afile").write_text("x")
    r = _cli("--ckpt", ckpt, "--out", tmp_path / "afile" / "sub")
    assert r.exit_code == 1 and "cannot create output folder" in r.output
    r = _cli("--ckpt", ckpt, "--out", out, "--flavor", "python", "--no-encoded")
    assert r.exit_code == 0, r.output
    assert "max rel diff" in r.output and "model.onnx" in r.output
    before = sorted(os.listdir(out / "gatta"))
    r = _cli("--ckpt", ckpt, "--out", out, "--flavor", "python")
    assert r.exit_code == 1 and "already exists" in r.output and "--force" in r.output
    r = _cli("--ckpt", ckpt, "--out", out, "--flavor", "python", "--version", "2", "--no-encoded")
    assert r.exit_code == 0 and sorted(os.listdir(out / "gatta")) == sorted(before + ["2"])
    r = _cli("--ckpt", ckpt, "--out", out, "--flavor", "python", "--force", "--no-encoded")
    assert r.exit_code == 0
    assert not [p for p in os.listdir(out) if p.startswith(".gatta-export")]
    assert not list(out.rglob("*.onnx.data"))


def test_instances_and_dynamic_batching_options(tmp_path):
    from gatta.export.repository import CORES_PER_AUTO_INSTANCE, MAX_AUTO_INSTANCES, export_cores, resolve_instances

    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=4, d=8, image_size=16)
    export_checkpoint(ckpt, ExportOptions(out=tmp_path / "a", flavour="python", instances=2, threads=1, encoded=False))
    export_checkpoint(ckpt, ExportOptions(out=tmp_path / "b", flavour="python", dynamic_batching=False, encoded=False))
    a, b = _parse(tmp_path / "a" / "gatta" / "config.pbtxt"), _parse(tmp_path / "b" / "gatta" / "config.pbtxt")
    assert a.instance_group[0].count == 2 and a.HasField("dynamic_batching")
    assert not b.HasField("dynamic_batching")
    assert a.parameters["intra_op_threads"].string_value == "1"
    # the defaults use the machine: one CPU instance per 2 cores here (at least 1, at most 4), and
    # the model shares the serving host's cores among its instances when it loads
    expected = max(1, min(export_cores() // CORES_PER_AUTO_INSTANCE, MAX_AUTO_INSTANCES))
    assert b.instance_group[0].count == expected >= 1
    assert b.parameters["intra_op_threads"].string_value == "auto"
    assert resolve_instances("auto", "python", "gpu") == resolve_instances("auto", "onnxruntime", "cpu") == 1
    with pytest.raises(ValueError, match="instances must be >= 1"):
        resolve_instances(0, "python", "cpu")


def test_class_directions_are_signed_by_the_logits_alpha():
    from gatta.export.signature import signature_for

    from helpers import make_model

    model = make_model(num_classes=4, d=8, image_size=16, alpha=0.5)
    keys = model.head.keys[-1].weight.detach().t()
    assert np.allclose(signature_for(model).class_keys, keys.numpy(), atol=1e-7)
    with torch.no_grad():
        model.head.alpha[-1] = -0.2  # more agreement now damps the logit: flip the direction
    assert np.allclose(signature_for(model).class_keys, -keys.numpy(), atol=1e-7)


@pytest.mark.parametrize("steps", [2, 3])
def test_more_attention_steps_unroll_into_one_verified_graph(tmp_path, steps):
    """T steps unroll T+1 passes; stage 0 (conv1) runs once, conv2 and conv3 once per pass."""
    ckpt = make_checkpoint(tmp_path / "t.pt", num_classes=4, d=8, image_size=16, alpha=0.8, iterations=steps)
    report = export_checkpoint(ckpt, ExportOptions(out=tmp_path / "repo", flavour="python", max_batch=4))
    assert max(report.verification["worst"].values()) <= 1e-4
    graph = onnx.load(str(tmp_path / "repo" / "gatta" / "1" / "model.onnx"))
    assert _backbone_convs(graph) == 1 + 2 * (steps + 1)
    model, _ = load_checkpoint(ckpt)
    x = np.random.default_rng(2).random((3, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).logits.numpy()
        one_step = model.__class__(model.config.__class__(**{**model.config.to_dict(), "iterations": 1}))
        one_step.load_state_dict(model.state_dict())
        single = one_step.eval()(torch.from_numpy(x)).logits.numpy()
    got = ort_session(tmp_path / "repo" / "gatta" / "1" / "model.onnx").run(["logits"], {"image": x})[0]
    parity, step_effect = np.abs(got - ref).max(), np.abs(got - single).max()
    assert parity <= 1e-5 and step_effect > 100 * parity  # the extra steps are really in the graph


def _family_checkpoint(path, backbone: str, image_size: int, alpha: float = 0.4):
    """A random-weight checkpoint with the backbone family's head recipe; ResNet norms moved
    off their identity initialisation so every folded term is exercised."""
    from gatta.model.checkpoint import save_checkpoint
    from gatta.model.recipe import recipe

    from helpers import calibrate_batch_norms, make_model

    rules = recipe("head", backbone)
    model = make_model(num_classes=5, d=8, image_size=image_size, backbone=backbone, alpha=alpha,
                       qk_batchnorm=rules.qk_batchnorm, gatta_layernorm=rules.gatta_layernorm)
    if not backbone.startswith(("toy", "resnet")):
        calibrate_batch_norms(model, image_size)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        if rules.qk_batchnorm:
            for bn in (model.head.key_norm, model.head.query_norm):
                bn.running_mean.copy_(torch.randn(8, generator=gen))
                bn.running_var.copy_(torch.rand(8, generator=gen) + 0.5)
                bn.weight.copy_(torch.rand(8, generator=gen) + 0.5)
                bn.bias.copy_(0.3 * torch.randn(8, generator=gen))
        if rules.gatta_layernorm:
            for ln in model.head.gatta_norms:
                ln.weight.copy_(torch.rand(ln.weight.shape, generator=gen) + 0.5)
    return save_checkpoint(path, model, {"stage": "head", "epoch": 1, "val_size": 16, "split_seed": 0}), model


def _backbone_convs(graph: onnx.ModelProto) -> int:
    """The graph's convolutions less the ones convolutions that expand modulation scales for
    ONNX Runtime's blocked CPU layout (cpu_layout.py)."""
    return sum(n.op_type == "Conv" and not cpu_layout.is_expansion(n) for n in graph.graph.node)


def _convs(module) -> int:
    return sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())


EXPORT_UNTESTED: set[str] = set()  # every family's example exports (docs/backbones.md, "Export")
FAMILY_EXAMPLES = ["toy", "toy-wide", "resnet50",
                   *(name for f in __import__("gatta.model.families", fromlist=["FAMILIES"]).FAMILIES
                     for name in f.examples if not name.startswith("toy") and name not in EXPORT_UNTESTED)]


@pytest.mark.parametrize("backbone", FAMILY_EXAMPLES)
def test_every_backbone_exports_and_verifies(tmp_path, backbone):
    """Each family's example exports both passes into one graph that ONNX Runtime runs like
    PyTorch, with lesion masks and query_bias; a backbone that cannot export fails here. Every
    output is also held against a float64 run of the same model: ONNX Runtime may be no further
    from it than 4x PyTorch FP32 is (plus 1e-6), so FP32 rounding is told from export faults."""
    import copy

    from gatta.export.verify import ROUNDING_FACTOR, ROUNDING_FLOOR, discrepancies
    from gatta.model.families import family_of

    family = family_of(backbone).name
    # 64 px: the stride-16 maps are 4x4 (a layer norm over a 2x2 map turns float32 rounding into
    # 1e-4); alpha 0.05 on the deep families, the scale of the shipped ResNet18 head's (0.03-0.07):
    # 0.4 compounds over 5-6 taps into logits in the thousands
    size = {"toy": 16, "resnet": 32}.get(family, 64)
    ckpt, model = _family_checkpoint(tmp_path / "m.pt", backbone, size, 0.4 if family in ("toy", "resnet") else 0.05)
    report = export_checkpoint(ckpt, ExportOptions(out=tmp_path / "repo", flavour="python", max_batch=4))
    layers = [t.name for t in model.taps]
    worst = report.verification["worst"]
    assert set(worst) == {"logits", "probs", "q_avg", *(f"gatta_{n}" for n in layers)}
    if "fp32_rounding" not in report.verification:
        # logits within 1e-5 relative on the toy and ResNet; the deeper families within the
        # exporter's own 5e-5 (EfficientNet-B0 measured 1.9e-5: ORT's and PyTorch's kernels
        # over ~80 layers, each about 1e-5 from float64)
        assert worst["logits"] <= (1e-5 if family in ("toy", "resnet") else 5e-5)
        assert max(v for k, v in worst.items() if k != "logits") <= 1e-4
    else:
        # judged against float64 (export/verify.py, fp32_rounding): the deep random-weight
        # examples whose PyTorch FP32 answer is itself ~1e-4 from float64 on the layer-normed
        # pre-logits map (measured: RegNet-X-400MF, MobileNetV3-small, DenseNet-121; EfficientNet-B0
        # meets 1e-4 by a hair). The toy and ResNet examples meet the FP32 figures directly.
        assert family not in ("toy", "resnet"), report.verification["fp32_rounding"]["first_miss"]
    path = tmp_path / "repo" / "gatta" / "1" / "model.onnx"
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    stages = model.backbone.stages
    # stage 0 (up to the first attached layer) once, everything after it in both passes
    assert _backbone_convs(onnx.load(str(path))) == _convs(stages[0]) + 2 * sum(_convs(s) for s in stages[1:])
    heads = len(layers) if model.config.gatta_layernorm else 0
    if not any(isinstance(m, torch.nn.LayerNorm) for m in model.backbone.modules()):
        assert ops["LayerNormalization"] == heads
    else:  # ConvNeXt's own (some reached through functional calls the module count misses)
        assert ops["LayerNormalization"] > heads
    session = ort_session(path)
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(7)
    x = rng.random((3, 3, size, size), dtype=np.float32)
    feeds = {"image": x, "lesion_mask": rng.integers(0, 2, (3, len(layers))).astype(np.float32),
             "query_bias": rng.normal(size=(3, 8)).astype(np.float32)}
    got = dict(zip(names, session.run(names, feeds)))
    exact = torch_outputs(copy.deepcopy(model).double(), _sig(model), {k: v.astype(np.float64) for k, v in feeds.items()})
    ort_err = discrepancies(exact, got)
    torch_err = discrepancies(exact, torch_outputs(model, _sig(model), feeds))
    worse = {k: (f"{v:.2e}", f"{torch_err[k]:.2e}") for k, v in ort_err.items()
             if not v <= ROUNDING_FACTOR * torch_err[k] + ROUNDING_FLOOR}
    assert not worse, f"ONNX Runtime's and PyTorch FP32's distances from float64: {worse}"
    # an image's answer does not depend on the rest of the batch (running statistics, static norms)
    alone = session.run(["logits"], {k: v[1:2] for k, v in feeds.items()})[0]
    assert np.abs(alone - session.run(["logits"], feeds)[0][1:2]).max() <= 1e-5


def test_class_directions_include_the_key_batch_norm_scale():
    from gatta.export.signature import signature_for

    from helpers import make_model

    model = make_model(num_classes=4, d=8, image_size=16, alpha=0.5, qk_batchnorm=True)
    with torch.no_grad():
        model.head.key_norm.running_var.copy_(torch.linspace(0.25, 4.0, 8))
        model.head.key_norm.weight.fill_(2.0)
    scale = 2.0 / torch.sqrt(torch.linspace(0.25, 4.0, 8) + model.head.key_norm.eps)
    keys = model.head.keys[-1].weight.detach().t() * scale
    assert np.allclose(signature_for(model).class_keys, keys.numpy(), atol=1e-6)


def test_float64_judgement_tells_rounding_from_export_faults():
    """Past the FP32 figures, a graph passes only if ONNX Runtime is about as close to float64 as
    PyTorch FP32 is: an answer off by a fault (here 3e-4 on one map) is still refused."""
    import copy

    from gatta.export.signature import signature_for
    from gatta.export.verify import fp32_rounding

    from helpers import make_model

    model = make_model(num_classes=4, d=8, image_size=16, alpha=0.5)
    sig = signature_for(model)
    feeds = {"image": np.random.default_rng(3).random((4, 3, 16, 16), dtype=np.float32)}
    fp32 = torch_outputs(model, sig, feeds)
    exact = torch_outputs(copy.deepcopy(model).double(), sig, {"image": feeds["image"].astype(np.float64)})
    rounded = {k: v.astype(np.float32) for k, v in exact.items()}  # as close to float64 as FP32 gets
    figures = fp32_rounding(model, sig, [(feeds, fp32, rounded)], {"logits": 0.0}, "a miss")
    assert figures["ort_vs_float64"]["logits"] <= 1e-7 and figures["first_miss"] == "a miss"
    faulty = {**rounded, "gatta_conv2": rounded["gatta_conv2"] + np.float32(3e-4)}
    with pytest.raises(ExportError, match=r"a miss; ONNX Runtime is further from float64 than 4x PyTorch FP32's rounding: gatta_conv2 3\.0"):
        fp32_rounding(model, sig, [(feeds, fp32, faulty)], {"gatta_conv2": 3e-4}, "a miss")
    with pytest.raises(ExportError, match=r"past 10x the FP32 tolerance: logits 1\.00e-03"):
        fp32_rounding(model, sig, [(feeds, fp32, rounded)], {"logits": 1e-3}, "a miss")
    # NaN is no rounding: Python's max(0.0, nan) is 0.0, so a NaN answer once passed with 0.0 figures
    broken = {**rounded, "logits": np.full_like(rounded["logits"], np.nan)}
    with pytest.raises(ExportError, match=r"rounding: logits nan"):
        fp32_rounding(model, sig, [(feeds, fp32, broken)], {"logits": float("nan")}, "a miss")
