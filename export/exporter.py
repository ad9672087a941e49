"""checkpoint -> verified ONNX -> Triton model repository, all or nothing.

Everything is built in a hidden staging folder inside ``out`` and moved into place only
after onnx.checker, shape inference and the PyTorch parity check passed; on any failure the
staging folder is removed, so ``out`` never holds a half-written model.

A repository may hold several models side by side (``gatta-serve`` serves them all): each
export writes only its own folders, ``<name>``, ``<name>_preprocess`` and ``<name>_encoded``,
and refuses before any work when one of them belongs to another model.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf import text_format

from gatta import contract
from gatta.contract import ModelMetadata
from gatta.model.checkpoint import CheckpointMeta, is_synthetic_data, load_checkpoint
from gatta.model.reference import REFERENCE_TOL, against_reference, read_reference

from . import cpu_layout
from .onnx_graph import check_onnx, export_onnx
from .repository import DEVICES, FLAVOURS, RepositoryOptions, read_config, write_repository
from .signature import signature_for
from .verify import ExportError, ort_session, verify_export

OPSETS = range(14, 21)  # what the TorchScript exporter and ONNX Runtime both handle here


@dataclass
class ExportOptions:
    out: Path = Path("model_repository")
    name: str = "gatta"
    version: int = 1
    max_batch: int = 64
    opset: int = 17
    fp16: bool = False
    baseline: bool = False
    flavour: str = "onnxruntime"  # onnxruntime | python | both
    force: bool = False
    threads: int | str = "auto"  # python flavour: ONNX Runtime threads per instance (auto: cores / instances)
    tensorrt_fp16: bool = False
    encoded: bool = True  # also write the encoded-bytes preprocessing ensemble
    dynamic_batching: bool = True
    queue_delay_us: int = 0  # Triton's dynamic batcher: how long a request may wait for others
    instances: int | str = "auto"  # Triton model instances (auto: one per core, at most 4, on CPU)
    device: str = "auto"  # python flavour: cpu | gpu | auto (gpu when this host has CUDA)

    def graph_layout(self) -> str:
        """The ONNX graph's layout (onnx_graph.export_onnx): cpu when a flavour written runs ONNX
        Runtime's CPU provider (the python flavour on cpu), else gpu (the onnxruntime flavour
        and the python flavour on a GPU share it)."""
        on_cpu = self.flavour in ("python", "both") and resolve_device(self.device) == "cpu"
        return "cpu" if on_cpu else "gpu"

    def cpu_twin_graph(self) -> bool:
        """Whether to also write the CPU twin's own graph: a python flavour exported for a GPU
        serves on hosts without one through configs/cpu.pbtxt, which then loads the graph
        shaped for ONNX Runtime's CPU layout (the blocked layout is FP32 only)."""
        return self.flavour in ("python", "both") and resolve_device(self.device) == "gpu" and not self.fp16

    def repository_options(self, flavour: str) -> RepositoryOptions:
        """What of these options reaches one flavour's Triton repository."""
        return RepositoryOptions(name=self.name, version=self.version, flavour=flavour, max_batch=self.max_batch,
                                 threads=self.threads, tensorrt_fp16=self.tensorrt_fp16, encoded=self.encoded,
                                 dynamic_batching=self.dynamic_batching, queue_delay_us=self.queue_delay_us,
                                 instances=self.instances,
                                 device=resolve_device(self.device))


def resolve_device(device: str) -> str:
    """``auto``: gpu when PyTorch sees a CUDA device here (the model is exported on the host
    that will serve it), else cpu."""
    if device == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if device not in DEVICES:
        raise ExportError(f"unknown device {device!r}; choose auto, cpu or gpu")
    return device


@dataclass
class ExportReport:
    signature: ModelMetadata
    verification: dict
    files: dict[str, int] = field(default_factory=dict)  # path -> bytes
    repositories: list[Path] = field(default_factory=list)


def verification_images(model, meta: CheckpointMeta, n: int = 8, seed: int = 0) -> tuple[np.ndarray, str]:
    """Real validation images when the checkpoint's dataset is on this machine, else random."""
    size = model.config.image_size
    data_path = meta.data
    if data_path and not is_synthetic_data(data_path) and Path(data_path).exists():
        from gatta.training.data import load_images, stratified_split

        data = load_images(data_path, size)
        if len(data.class_names) == model.config.num_classes:
            _, val = stratified_split(data.labels, meta.val_size, meta.split_seed)
            return data.images[val[:n]].float().div(255).numpy(), f"{n} validation images of {data_path}"
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, size, size), dtype=np.float32), f"{n} random images"


def verify_reference(onnx_path: Path, signature: ModelMetadata, reference) -> dict:
    """A shipped checkpoint's weights may be rounded (half-precision backbone): the exported
    graph must still answer like the FP32 model it came from, on the pictures kept for that."""
    session = ort_session(onnx_path, "all")
    feeds = {contract.IMAGE: reference.inputs()}
    logits = session.run([contract.LOGITS], feeds)[0]
    check = against_reference(logits, reference)
    if not check["ok"]:
        raise ExportError(
            f"the exported model disagrees with the FP32 model the checkpoint was shipped from: logits rel "
            f"{check['logits_rel']:.1e} (limit {REFERENCE_TOL['logits_rel']:.0e}), probs abs "
            f"{check['probs_abs']:.1e} (limit {REFERENCE_TOL['probs_abs']:.0e}), top-1 {check['top1_agree']}/{check['n']}")
    return check


def _check_target(opts: ExportOptions, flavours: list[str]) -> list[Path]:
    if opts.opset not in OPSETS:
        raise ExportError(f"opset {opts.opset} is not supported; use {OPSETS.start}..{OPSETS.stop - 1}")
    if opts.flavour not in (*FLAVOURS, "both"):
        raise ExportError(f"unknown flavour {opts.flavour!r}; choose onnxruntime, python or both")
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create output folder {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ExportError(f"output folder {out} is not writable")
    if not contract.MODEL_NAME.fullmatch(opts.name):
        raise ExportError(f"model name {opts.name!r} must be letters, digits, '_', '.' or '-' (not first)")
    return [out] if len(flavours) == 1 else [out / f for f in flavours]


def model_owner(model_dir: Path) -> str | None:
    """The gattanet model a folder of a repository belongs to: a classifier (its config carries
    the metadata) owns itself, ``<name>_preprocess`` and the ``<name>_encoded`` ensemble belong
    to ``<name>``; None for anything else (another system's model, an unreadable config)."""
    name = model_dir.name
    try:
        config = read_config(model_dir / "config.pbtxt")
    except (OSError, text_format.ParseError):
        return None
    if contract.is_gattanet_config(config):
        return name
    if config.platform == "ensemble" and name.endswith(contract.ENCODED_SUFFIX):
        base = name.removesuffix(contract.ENCODED_SUFFIX)
        steps = [step.model_name for step in config.ensemble_scheduling.step]
        return base if steps == [base + contract.PREPROCESS_SUFFIX, base] else None
    if name.endswith(contract.PREPROCESS_SUFFIX) and contract.PARAM_TENSORS in config.parameters:
        return name.removesuffix(contract.PREPROCESS_SUFFIX)
    return None


def gattanet_models(repo: Path) -> list[str]:
    """The gattanet classifiers in a repository (what ``gatta-client --model`` can name)."""
    return sorted(p.parent.name for p in Path(repo).glob("*/config.pbtxt") if model_owner(p.parent) == p.parent.name)


def _describe(meta: ModelMetadata) -> str:
    return (f"{len(meta.labels)} classes, {meta.image_size}x{meta.image_size} input, layers "
            f"{meta.full_pattern or '-'}, {meta.flavour} flavour{', baseline' if meta.baseline else ''}")


def _signature(meta: ModelMetadata) -> dict:
    """What versions of one model must share, since they share its config.pbtxt: the metadata
    but the trained values in it (class directions, alphas)."""
    described = meta.to_dict()
    described.pop("class_keys")
    described["layers"] = [{k: v for k, v in layer.items() if k != "alpha"} for layer in described["layers"]]
    return described


def _check_neighbours(repo: Path, opts: ExportOptions, meta: ModelMetadata) -> list[Path]:
    """Refuse, in one line, an export that would overwrite another model's folders, replace a
    version without --force, or give a served model a second signature; returns the folders to
    remove before moving the new model in (--force over a model of another signature: all of
    that model's folders, so no old version is served with the new config)."""
    name = opts.name
    family = [name] + ([name + contract.PREPROCESS_SUFFIX, name + contract.ENCODED_SUFFIX] if opts.encoded else [])
    for folder in family:
        path = repo / folder
        if path.exists() and (owner := model_owner(path)) != name:
            whose = f"model '{owner}'" if owner else "a model that gatta-export did not write for this name"
            raise ExportError(f"--name {name} would overwrite {path}, which belongs to {whose}; choose another --name")
    if not (repo / name).exists():
        return []
    existing = ModelMetadata.from_json(read_config(repo / name / "config.pbtxt").parameters[contract.PARAM_METADATA]
                                       .string_value)
    if _signature(existing) != _signature(meta):
        if not opts.force:
            raise ExportError(f"{repo / name} holds another model ({_describe(existing)}) than this checkpoint "
                              f"({_describe(meta)}); export it beside it with another --name, or pass --force to "
                              f"replace '{name}' with all its versions")
        return [p for p in (repo / name, repo / (name + contract.PREPROCESS_SUFFIX),
                            repo / (name + contract.ENCODED_SUFFIX)) if p.exists() and model_owner(p) == name]
    version = repo / name / str(opts.version)
    if version.exists():
        if not opts.force:
            raise ExportError(f"{version} already exists; pass --force to replace it or --version N")
        return [version]
    return []


def _move_into_place(staged_repo: Path, repo: Path) -> None:
    """Move the staged model folders into ``repo``; other models' folders are never touched,
    and a model already there keeps its other versions."""
    repo.mkdir(parents=True, exist_ok=True)
    for model_dir in staged_repo.iterdir():
        target = repo / model_dir.name
        if not target.exists():
            os.replace(model_dir, target)
            continue
        for item in model_dir.iterdir():  # keep other versions already served from target
            dest = target / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)


def _cpu_twin_graph(model, signature, staging: Path, opts: ExportOptions, images, verification: dict,
                    progress) -> Path | None:
    """The CPU twin's graph (ExportOptions.cpu_twin_graph), verified against PyTorch like the
    main graph (its worst differences in ``verification["cpu_graph"]``); None where ONNX
    Runtime here keeps no modulation blocked, so it would equal the main graph."""
    progress("exporting the CPU twin's graph (blocked-layout modulations)")
    path = export_onnx(model, signature, staging / contract.CPU_GRAPH_FILE, opts.opset, opts.fp16, "cpu")
    if not any(cpu_layout.is_expansion(n) for n in onnx.load(str(path), load_external_data=False).graph.node):
        path.unlink()
        return None
    try:
        check_onnx(path)
    except Exception as exc:
        raise ExportError(f"the CPU twin's graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
    progress("verifying the CPU twin's graph against PyTorch")
    verification["cpu_graph"] = verify_export(model, signature, path, images, opts.fp16)["worst"]
    return path


def export_checkpoint(ckpt: Path, opts: ExportOptions, progress=lambda msg: None) -> ExportReport:
    model, meta = load_checkpoint(ckpt)
    flavours = list(FLAVOURS) if opts.flavour == "both" else [opts.flavour]
    repos = _check_target(opts, flavours)
    signature = signature_for(model, baseline=opts.baseline)
    replaced = {repo: _check_neighbours(repo, opts, dataclasses.replace(signature, flavour=flavour))
                for flavour, repo in zip(flavours, repos)}
    staging = Path(tempfile.mkdtemp(prefix=".gatta-export-", dir=opts.out))
    try:
        progress("exporting ONNX graph")
        onnx_path = export_onnx(model, signature, staging / "model.onnx", opts.opset, opts.fp16,
                                opts.graph_layout())
        progress("checking graph (onnx.checker full, shape inference)")
        try:
            check_onnx(onnx_path)
        except Exception as exc:
            raise ExportError(f"exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
        reference = read_reference(ckpt, model.config)
        if reference is not None:
            images, source = reference.inputs(), reference.source
        else:
            images, source = verification_images(model, meta)
        progress(f"verifying against PyTorch on {source}")
        verification = verify_export(model.float() if opts.fp16 else model, signature, onnx_path, images, opts.fp16)
        verification["images"] = source
        if reference is not None and not opts.baseline:  # the reference holds GAttANet's logits
            progress("verifying against the FP32 model the checkpoint was shipped from")
            verification["fp32_reference"] = verify_reference(onnx_path, signature, reference)
        cpu_graph = None
        if opts.cpu_twin_graph():
            cpu_graph = _cpu_twin_graph(model, signature, staging, opts, images, verification, progress)
        report = ExportReport(signature, verification)
        for flavour, repo in zip(flavours, repos):
            staged = staging / f"repo-{flavour}"
            files = write_repository(staged, signature, onnx_path, opts.repository_options(flavour), cpu_graph)
            for f in files:
                report.files[str(repo / f.relative_to(staged))] = f.stat().st_size
            for old in replaced[repo]:  # only with --force (checked above)
                shutil.rmtree(old)
            _move_into_place(staged, repo)
            report.repositories.append(repo)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
