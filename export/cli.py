"""``gatta-export``: checkpoint -> verified ONNX -> Triton model repository."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gatta.extras import onnxruntime_conflict, require

require("torch", "export")
require("onnxruntime", "export")

from gatta import contract  # noqa: E402
from gatta.model.checkpoint import CheckpointError  # noqa: E402

from .exporter import ExportOptions, export_checkpoint, gattanet_models  # noqa: E402
from .verify import ExportError  # noqa: E402

from gatta.models import DEFAULT_CHECKPOINT as DEFAULT_CKPT  # noqa: E402


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def summary_table(report) -> str:
    sig, ver = report.signature, report.verification
    lines = ["tensor                 dims            dtype  notes"]
    for spec in sig.inputs:
        note = "optional (python flavour, ONNX default)" if spec.optional else "pixels in [0, 1]" if spec.name == contract.IMAGE else ""
        lines.append(f"in  {spec.name:<18} {'B x ' + 'x'.join(map(str, spec.dims)):<15} {spec.dtype:<6} {note}")
    for spec in sig.outputs:
        fig = ver["worst"].get(spec.name)
        note = f"max {'rel' if spec.name == contract.LOGITS else 'abs'} diff {fig:.1e}" if fig is not None else ""
        lines.append(f"out {spec.name:<18} {'B x ' + 'x'.join(map(str, spec.dims)):<15} {spec.dtype:<6} {note}")
    lines.append(f"\nverified against PyTorch: {ver['cases']} runs on {ver['images']} "
                 f"(tolerance abs {ver['tolerance']['abs']:.0e}, logits rel {ver['tolerance']['logits_rel']:.0e})")
    if rounding := ver.get("fp32_rounding"):
        judged = max(rounding["ort_vs_float64"], key=lambda k: rounding["ort_vs_float64"][k] / max(rounding["torch_fp32_vs_float64"][k], 1e-12))
        lines.append(f"past that tolerance, judged against float64 (PyTorch FP32's own rounding): ONNX Runtime within "
                     f"{rounding['factor']:g}x PyTorch FP32's distance on every output (closest call {judged}: "
                     f"{rounding['ort_vs_float64'][judged]:.1e} vs {rounding['torch_fp32_vs_float64'][judged]:.1e})")
    if ref := ver.get("fp32_reference"):
        lines.append(f"verified against the FP32 model it was shipped from: logits rel {ref['logits_rel']:.1e}, "
                     f"probs abs {ref['probs_abs']:.1e}, top-1 {ref['top1_agree']}/{ref['n']} (limit 1e-02)")
    lines.append(f"execution providers verified: {', '.join(ver['providers'])}"
                 + (f" (CUDA not verified: {ver['cuda_skipped']})" if ver.get("cuda_skipped") else ""))
    lines.append("files:")
    lines += [f"  {path}  ({_size(size)})" for path, size in sorted(report.files.items())]
    return "\n".join(lines)


def _count_or_auto(ctx, param, value):
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"{value!r} is neither a positive count nor auto")
    return int(value)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ckpt", type=click.Path(path_type=Path), default=DEFAULT_CKPT, show_default=True,
              help="gattanet checkpoint (gatta-train output); default: the bundled CIFAR-10 model.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("model_repository"), show_default=True,
              help="Triton model repository folder: created, or added to. Other models in it and other "
                   "versions of this one are kept; gatta-serve serves every model in it.")
@click.option("--name", default="gatta", show_default=True,
              help="Model name in Triton (gatta-client --model NAME). Writes NAME, NAME_preprocess and "
                   "NAME_encoded; to add a second model to a repository, give it its own name.")
@click.option("--version", default=1, show_default=True, help="Model version folder.")
@click.option("--max-batch", default=64, show_default=True, help="Triton max_batch_size.")
@click.option("--opset", default=17, show_default=True, help="ONNX opset (14..20).")
@click.option("--fp16", is_flag=True, help="Half-precision weights and compute (IO stays FP32); looser parity (1e-2).")
@click.option("--baseline", is_flag=True, help="Export the frozen backbone alone (image -> logits, probs) for A/B serving.")
@click.option("--flavor", "flavour", type=click.Choice(["onnxruntime", "python", "both"]),
              default="onnxruntime", show_default=True,
              help="onnxruntime: Triton's native backend, GPU (NVIDIA's container; lesion_mask/query_bias required, "
                   "no NaN check, no gatta_* metrics). python: ONNX Runtime inside Triton's python backend, on the "
                   "GPU or CPU (--device), runs anywhere; the Docker image ships it. both: OUT/onnxruntime and OUT/python.")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="python flavour: gpu = KIND_GPU instances on ONNX Runtime's CUDA provider (onnxruntime-gpu), with "
                   "configs/cpu.pbtxt that gatta-serve uses on hosts without a GPU; cpu = KIND_CPU; auto = gpu when "
                   "this host has CUDA. On cpu the graph spells each modulation's channel broadcast out where ONNX "
                   "Runtime then keeps the second pass in its blocked CPU layout (exact; docs/export.md).")
@click.option("--threads", default="auto", show_default=True, callback=_count_or_auto,
              help="python flavour: ONNX Runtime threads per model instance; auto = the serving host's cores "
                   "divided among the instances, worked out when the model loads.")
@click.option("--instances", default="auto", show_default=True, callback=_count_or_auto,
              help="Model instances Triton runs side by side; auto = python flavour on CPU: one per core of "
                   "this host, at most 4; on a GPU: 1.")
@click.option("--tensorrt-fp16", is_flag=True, help="onnxruntime flavour: enable the TensorRT FP16 execution accelerator.")
@click.option("--no-encoded", is_flag=True, help="Skip the encoded-image (JPEG/PNG bytes) preprocessing ensemble.")
@click.option("--no-dynamic-batching", is_flag=True, help="Leave Triton's dynamic batcher off (for A/B benchmarks).")
@click.option("--max-queue-delay-us", "queue_delay_us", type=click.IntRange(min=0), default=0, show_default=True,
              help="How long Triton's dynamic batcher holds a request for others to join its batch, in "
                   "microseconds. A lone request waits this long (200 us added about 0.3 ms to a batch-1 request here); "
                   "under load, requests that queue while a batch runs are batched anyway.")
@click.option("--force", is_flag=True,
              help="Replace this model's existing version; or, when NAME holds a model of another signature "
                   "(classes, input size, layers, flavour), replace that model with all its versions. Never "
                   "touches other models' folders.")
def main(ckpt, out, name, version, max_batch, opset, fp16, baseline, flavour, device, threads, instances, tensorrt_fp16,
         no_encoded, no_dynamic_batching, queue_delay_us, force):
    """Export a GAttANet checkpoint as one static ONNX graph (both passes unrolled, optional
    lesion mask), verify it against PyTorch, and write a Triton model repository.

    \b
    Example:
      gatta-export --ckpt runs/head/best.pt --out model_repository --flavor python
      gatta-serve --model-repository model_repository

    \b
    Several models in one server: export each under its own --name into the same --out.
      gatta-export --ckpt models/cifar10-toy-d16.pt --out repo --flavor python --name cifar10
      gatta-export --ckpt runs/resnet/best.pt --out repo --flavor python --name resnet18
      gatta-serve --model-repository repo
      gatta-client classify cat.jpg --model resnet18
    """
    opts = ExportOptions(out=out, name=name, version=version, max_batch=max_batch, opset=opset, fp16=fp16,
                         baseline=baseline, flavour=flavour, force=force, threads=threads,
                         tensorrt_fp16=tensorrt_fp16, encoded=not no_encoded,
                         dynamic_batching=not no_dynamic_batching, queue_delay_us=queue_delay_us, instances=instances,
                         device=device)
    if conflict := onnxruntime_conflict():
        click.echo(f"warning: {conflict}", err=True)
    try:
        report = export_checkpoint(ckpt, opts, progress=lambda m: click.echo(f"... {m}", err=True))
    except (CheckpointError, ExportError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    click.echo(summary_table(report))
    for repo in report.repositories:
        models = gattanet_models(repo)
        click.echo(f"\nmodel repository ready: {repo} (gattanet model{'s' if len(models) > 1 else ''} "
                   f"{', '.join(models)}; gatta-serve serves {'them all' if len(models) > 1 else 'it'})")


if __name__ == "__main__":
    sys.exit(main())
