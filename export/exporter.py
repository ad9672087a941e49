"""checkpoint -> verified ONNX -> Triton model repository, all or nothing.

Everything is built in a hidden staging folder inside ``out`` and moved into place only
after onnx.checker, shape inference and the PyTorch parity check passed; on any failure the
staging folder is removed, so ``out`` never holds a half-written model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gatta.training.checkpoint import CheckpointMeta, load_checkpoint

from .onnx_graph import check_onnx, export_onnx
from gatta.contract import ModelMetadata

from .repository import DEVICES, FLAVOURS, RepositoryOptions, write_repository
from .signature import signature_for
from .verify import ExportError, verify_export

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
    threads: int = 1  # python flavour: ONNX Runtime intra-op threads per instance
    tensorrt_fp16: bool = False
    encoded: bool = True  # also write the encoded-bytes preprocessing ensemble
    dynamic_batching: bool = True
    instances: int = 1  # Triton model instances (instance_group count)
    device: str = "auto"  # python flavour: cpu | gpu | auto (gpu when this host has CUDA)

    def repository_options(self, flavour: str) -> RepositoryOptions:
        """What of these options reaches one flavour's Triton repository."""
        return RepositoryOptions(name=self.name, version=self.version, flavour=flavour, max_batch=self.max_batch,
                                 threads=self.threads, tensorrt_fp16=self.tensorrt_fp16, encoded=self.encoded,
                                 dynamic_batching=self.dynamic_batching, instances=self.instances,
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
    if data_path and not str(data_path).startswith("synthetic") and Path(data_path).exists():
        from gatta.training.data import load_images, stratified_split

        data = load_images(data_path, size)
        if len(data.class_names) == model.config.num_classes:
            _, val = stratified_split(data.labels, meta.val_size, meta.split_seed)
            return data.images[val[:n]].float().div(255).numpy(), f"{n} validation images of {data_path}"
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, size, size), dtype=np.float32), f"{n} random images"


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
    repos = [out] if len(flavours) == 1 else [out / f for f in flavours]
    for repo in repos:
        existing = repo / opts.name / str(opts.version)
        if existing.exists() and not opts.force:
            raise ExportError(f"{existing} already exists; pass --force to replace it or --version N")
    return repos


def _move_into_place(staged_repo: Path, repo: Path) -> None:
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


def export_checkpoint(ckpt: Path, opts: ExportOptions, progress=lambda msg: None) -> ExportReport:
    model, meta = load_checkpoint(ckpt)
    flavours = list(FLAVOURS) if opts.flavour == "both" else [opts.flavour]
    repos = _check_target(opts, flavours)
    signature = signature_for(model, baseline=opts.baseline)
    staging = Path(tempfile.mkdtemp(prefix=".gatta-export-", dir=opts.out))
    try:
        progress("exporting ONNX graph")
        onnx_path = export_onnx(model, signature, staging / "model.onnx", opts.opset, opts.fp16)
        progress("checking graph (onnx.checker full, shape inference)")
        try:
            check_onnx(onnx_path)
        except Exception as exc:
            raise ExportError(f"exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
        images, source = verification_images(model, meta)
        progress(f"verifying against PyTorch on {source}")
        verification = verify_export(model.float() if opts.fp16 else model, signature, onnx_path, images, opts.fp16)
        verification["images"] = source
        report = ExportReport(signature, verification)
        for flavour, repo in zip(flavours, repos):
            staged = staging / f"repo-{flavour}"
            files = write_repository(staged, signature, onnx_path, opts.repository_options(flavour))
            for f in files:
                report.files[str(repo / f.relative_to(staged))] = f.stat().st_size
            if opts.force:
                old = repo / opts.name / str(opts.version)
                if old.exists():
                    shutil.rmtree(old)
            _move_into_place(staged, repo)
            report.repositories.append(repo)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
