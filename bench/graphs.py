"""In-process timing of exported graphs: baseline vs GAttANet against the analytic floor,
graph optimisation levels, PyTorch eager vs ONNX Runtime. Used by scripts/bench_export.py and
scripts/bench_serving.py (`make bench`)."""

from __future__ import annotations

import json
import statistics
import warnings
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from gatta.contract import IMAGE
from gatta.export.onnx_graph import export_onnx
from gatta.export.signature import signature_for
from gatta.export.verify import ort_session


def stage_macs(model) -> list[int]:
    """Multiply-accumulates of each backbone stage for one image (conv and linear layers)."""
    counts = [0]
    macs: list[int] = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            counts[0] += output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
        elif isinstance(module, nn.Linear):
            counts[0] += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    h = torch.zeros(1, 3, model.config.image_size, model.config.image_size)
    with torch.no_grad():
        for stage in model.backbone.stages:
            counts[0] = 0
            h = stage(h)
            macs.append(counts[0])
    for handle in handles:
        handle.remove()
    return macs


def analytic_floor(model) -> tuple[float, float]:
    """(floor, prefix share): T+1 passes (T attention steps) minus the prefix that runs once,
    relative to one pass; 1.92x for the toy model at T=1."""
    macs = stage_macs(model)
    passes = model.config.iterations + 1
    return (passes * sum(macs) - (passes - 1) * macs[0]) / sum(macs), macs[0] / sum(macs)


class _StageZeroThenRest(nn.Module):
    """image -> logits through stage 0 and then the later stages as one named block
    (``/later/`` in the exported node names), so the block can be repeated in ONNX."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.later = nn.Sequential(*model.backbone.stages[1:])

    def forward(self, image):
        return self.later(self.model.backbone.stages[0](self.model.normalize(image)))


# ONNX Runtime would run the identical passes once: its common-subexpression elimination
# merges nodes with the same inputs and attributes
PASSES_DISABLED_OPTIMIZERS = ["CommonSubexpressionElimination"]


def export_backbone_passes(model, path: Path) -> Path:
    """What a GAttANet graph would cost if its attention were free (its measured floor): the
    backbone with no attention, stage 0 once and every later stage T+1 times from its output,
    each pass's logits an output (``logits_pass1`` ...). Unlike the analytic floor it charges
    what multiply-adds do not count (pooling, normalisation, layout copies). Time it in a
    session with ``PASSES_DISABLED_OPTIMIZERS`` off (``backbone_passes_session``)."""
    module = _StageZeroThenRest(model.eval()).eval()
    size = model.config.image_size
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, (torch.rand(2, 3, size, size),), str(path), input_names=[IMAGE],
                          output_names=["logits_pass1"], dynamic_axes={IMAGE: {0: "batch"}, "logits_pass1": {0: "batch"}},
                          opset_version=17, dynamo=False, external_data=False)
    graph = onnx.load(str(path))
    later = [n for n in graph.graph.node if "/later/" in n.name]
    produced = {o for n in later for o in n.output}
    first_output = graph.graph.output[0]
    for p in range(2, model.config.iterations + 2):
        for node in later:
            twin = onnx.NodeProto()
            twin.CopyFrom(node)
            twin.name = f"{node.name}_pass{p}"
            twin.input[:] = [f"{i}_pass{p}" if i in produced else i for i in node.input]
            twin.output[:] = [f"{o}_pass{p}" for o in node.output]
            graph.graph.node.append(twin)
        out = onnx.ValueInfoProto()
        out.CopyFrom(first_output)
        out.name = f"logits_pass{p}"
        graph.graph.output.append(out)
        graph.graph.node.append(onnx.helper.make_node("Identity", [f"{first_output.name}_pass{p}"], [out.name]))
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return path


def backbone_passes_session(path: Path, options=None):
    """An ONNX Runtime session for ``export_backbone_passes``'s graph: default options but the
    one optimiser that would merge its passes."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=PASSES_DISABLED_OPTIMIZERS)


def second_pass_rounds(models: dict, batch: int = 64, rounds: int = 10, reps: int = 7, seed: int = 0) -> dict:
    """Time of each GAttANet graph over its baseline graph under ONNX Runtime's default session
    options, per round (each round runs every graph once, order flipped every other round).
    ``models``: label -> GattaNet; the baseline graph is the first model's backbone. Each model
    is also held against its measured floor: the backbone's passes without attention
    (``export_backbone_passes``, one graph per step count), timed in the same rounds."""
    import onnxruntime as ort

    from .interleaved import spread, steady_rounds

    tmp = Path(tempfile.mkdtemp())
    first = next(iter(models.values()))
    others = sorted({m.config.backbone for m in models.values()} - {first.config.backbone})
    if others:  # one baseline graph serves every row
        raise ValueError(f"second_pass_rounds compares models of one backbone ({first.config.backbone}), "
                         f"not {', '.join(others)}")
    paths = {"baseline": export_onnx(first, signature_for(first, baseline=True), tmp / "baseline.onnx")}
    floors = {}
    for label, model in models.items():
        paths[label] = export_onnx(model, signature_for(model), tmp / f"{len(paths)}.onnx")
        floors[label] = f"{model.config.iterations + 1} passes, no attention"
        if floors[label] not in paths:
            paths[floors[label]] = export_backbone_passes(model, tmp / f"{len(paths)}.onnx")
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 3  # warnings only; every performance option stays default
    sessions = {k: backbone_passes_session(p, quiet) if k in floors.values() else
                ort.InferenceSession(str(p), quiet, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    size = first.config.image_size
    x = {IMAGE: np.random.default_rng(seed).random((batch, 3, size, size), dtype=np.float32)}
    times = steady_rounds(sessions, x, rounds, reps)
    out = {"batch": batch, "rounds": rounds, "reps": reps, "baseline_ms": spread([t * 1e3 for t in times["baseline"]]), "models": {}}
    for label, model in models.items():
        floor, _ = analytic_floor(model)
        ratio = spread([g / b for g, b in zip(times[label], times["baseline"])])
        measured = spread([f / b for f, b in zip(times[floors[label]], times["baseline"])])
        out["models"][label] = {"iterations": model.config.iterations, "floor": floor, "ratio": ratio,
                                "vs_floor": ratio["median"] / floor, "measured_floor": measured,
                                "measured_floor_graph": floors[label],
                                "vs_measured_floor": spread([g / f for g, f in zip(times[label], times[floors[label]])])}
    return out


# one member per family, the cheaper ones (VGG's 530 MB graph is left out: its export alone takes
# minutes here); any torchvision or timm name works with scripts/bench_serving.py --families
FAMILY_ROWS = ("resnet18", "convnext_tiny", "efficientnet_b0", "mobilenet_v3_large", "regnet_y_400mf", "densenet121")


def calibrated_model(backbone: str, image_size: int = 224, num_classes: int = 1000, seed: int = 0):
    """A random-weight GAttANet with the family's head recipe whose batch-norm statistics come
    from a few random images, so activations stay in range (no overflow or denormals that
    would time a different computation than trained weights do)."""
    from gatta.model.network import GattaNet
    from gatta.model.recipe import head_config

    torch.manual_seed(seed)
    model = GattaNet(head_config(backbone, num_classes=num_classes, image_size=image_size, alpha_init=0.1))
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
    model.backbone.train()
    with torch.no_grad():
        for _ in range(2):
            model.forward_backbone(torch.rand(8, 3, image_size, image_size))
    return model.eval()


def family_rows(backbones=FAMILY_ROWS, image_size: int = 224, batch: int = 8, rounds: int = 5,
                progress=lambda msg: None) -> dict:
    """The second pass's cost per backbone family at ``image_size``: each family's GAttANet
    graph over its own baseline graph (second_pass_rounds), against its analytic floor."""
    out = {"image_size": image_size, "batch": batch, "rounds": rounds, "models": {}}
    for name in backbones:
        progress(f"second pass of {name} at {image_size} px ...")
        rows = second_pass_rounds({name: calibrated_model(name, image_size)}, batch=batch, rounds=rounds)
        out["models"][name] = {**rows["models"][name], "baseline_ms": rows["baseline_ms"]}
    return out


def measure(fns: dict, seconds: float, min_runs: int = 5) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved round-robin so machine
    noise hits every variant alike."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    deadline = time.perf_counter() + seconds * len(fns)
    while time.perf_counter() < deadline or min(len(v) for v in times.values()) < min_runs:
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def in_process_table(model, threads: int = 2, seconds: float = 2.0, batches=(1, 64),
                     levels=("basic", "extended", "all")) -> dict:
    """Seconds per batch for baseline/GAttANet under ORT at each level and PyTorch eager."""
    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp())
    paths = {kind: export_onnx(model, signature_for(model, baseline=kind == "baseline"), tmp / f"{kind}.onnx")
             for kind in ("baseline", "gattanet")}
    sessions = {f"{kind} ORT {level}": ort_session(paths[kind], level, threads, spinning=False)
                for kind in ("baseline", "gattanet") for level in levels}
    size = model.config.image_size
    rows: dict[str, dict[int, float]] = {}
    for batch in batches:
        x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
        xt = torch.from_numpy(x)
        fns = {name: (lambda s=s: s.run(None, {IMAGE: x})) for name, s in sessions.items()}

        def eager_base():
            with torch.no_grad():
                model.forward_backbone(xt)

        def eager_gatta():
            with torch.no_grad():
                model(xt, return_maps=True)

        fns["baseline PyTorch eager"], fns["gattanet PyTorch eager"] = eager_base, eager_gatta
        for name, sec in measure(fns, seconds).items():
            rows.setdefault(name, {})[batch] = sec
    floor, prefix = analytic_floor(model)
    return {"floor": floor, "prefix_share": prefix, "threads": threads, "rows": rows, "paths": {k: str(v) for k, v in paths.items()}}


def profile_ops(path: Path, size: int, threads: int, batch: int = 64) -> dict[str, float]:
    """Share of ONNX Runtime kernel time per operator type (ORT's profiler)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.profile_file_prefix = str(Path(path).with_suffix(""))
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    for _ in range(20):
        session.run(None, {IMAGE: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + e["dur"]
    total = sum(by_op.values())
    return {op: d / total for op, d in sorted(by_op.items(), key=lambda kv: -kv[1])}
