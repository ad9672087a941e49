"""Every export checks itself: ONNX Runtime against PyTorch on the same batches.

On the CPU execution provider always, and also on the CUDA provider when this ONNX Runtime
has it (the onnxruntime-gpu wheel) and PyTorch sees a GPU, with the same tolerances; the
report lists the providers verified. TF32 is off on CUDA, as in the served model: it keeps
only 10 mantissa bits in convolutions and would break the FP32 tolerance.

Tolerances (FP32): max absolute difference <= 1e-4 for probs, q_avg and gatta maps; logits
relative <= 5e-5 (max |ort - torch| / max |torch|). The bundled toy model measures 4e-7; a
ResNet18's two passes sum in a different order in ORT and reach ~1.3e-5 (random weights, 32 px,
tests/test_shipping.py), so 1e-5 would refuse sound ResNet exports. FP16 exports are compared
with 1e-2 abs on probs and 1e-2 relative on logits and maps (half precision keeps ~3 decimal
digits).

Where an FP32 graph misses those figures, PyTorch's own FP32 answer may be what is off: deep
networks accumulate rounding, and a layer-normed gatta map over a few hundred units turns it
into 1e-4 (random-weight RegNet-X-400MF: PyTorch FP32 is itself 1.8e-4 from the float64 answer
on its pre-logits map, ONNX Runtime 1.6e-4). Such a graph is then judged against a float64 run
of the same model: it passes when ONNX Runtime is no further from float64 than 4x PyTorch FP32's
own distance (plus 1e-6) on every output, and within 10x the figures above of PyTorch; the
report carries both distances (docs/backbones.md, "Export"). Two sound FP32 runs differ in that
distance by up to ~2.3x (measured); an export fault (a wrong operator, a dropped input) is off
by orders of magnitude.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from gatta import contract
from gatta.contract import ModelMetadata

FP32_TOL = {"abs": 1e-4, "logits_rel": 5e-5}
FP16_TOL = {"abs": 1e-2, "logits_rel": 1e-2}
# the float64 judgement of an FP32 graph that misses FP32_TOL (module docstring)
ROUNDING_FACTOR, ROUNDING_FLOOR, ROUNDING_CEILING = 4.0, 1e-6, 10.0


class ExportError(RuntimeError):
    """The export failed its own verification or could not be written."""


CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def ort_session(path: Path, level: str = "all", threads: int = 0, spinning: bool = True,
                provider: str = CPU) -> ort.InferenceSession:
    """``spinning=False`` stops idle intra-op threads from busy-waiting after a run, which
    would steal the CPU from whatever runs next (matters for side-by-side timing)."""
    opts = ort.SessionOptions()
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    opts.log_severity_level = 3  # the defaults-as-initializers notice is expected
    if threads:
        opts.intra_op_num_threads = threads
    providers = [(CUDA, {"device_id": 0, "use_tf32": 0}), CPU] if provider == CUDA else [CPU]
    return ort.InferenceSession(str(path), opts, providers=providers)


def cuda_sessions(path: Path) -> tuple[dict, str]:
    """{"CUDA": session} when the CUDA provider can run here, else ({}, why not)."""
    if CUDA not in ort.get_available_providers():
        return {}, f"{CUDA} not in this onnxruntime (the onnxruntime-gpu wheel has it)"
    if not torch.cuda.is_available():
        return {}, "no CUDA GPU visible"
    session = ort_session(path, "all", provider=CUDA)
    if session.get_providers()[0] != CUDA:  # ORT falls back to CPU when CUDA/cuDNN fail to load
        return {}, f"{CUDA} failed to start (CUDA/cuDNN libraries?)"
    return {"CUDA": session}, ""


@torch.no_grad()
def torch_outputs(model, signature: ModelMetadata, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    image = torch.from_numpy(feeds[contract.IMAGE])
    if signature.baseline:
        logits = model.forward_backbone(image)
        return {contract.LOGITS: logits.numpy(), contract.PROBS: torch.softmax(logits, 1).numpy()}
    mask = torch.from_numpy(feeds[contract.LESION_MASK]) if contract.LESION_MASK in feeds else None
    bias = torch.from_numpy(feeds[contract.QUERY_BIAS]) if contract.QUERY_BIAS in feeds else None
    out = model(image, lesion_mask=mask, query_bias=bias, return_maps=True)
    result = {contract.LOGITS: out.logits.numpy(), contract.PROBS: torch.softmax(out.logits, 1).numpy(),
              contract.Q_AVG: out.q_avg.numpy()}
    result.update({contract.gatta_output(k): v.numpy() for k, v in out.gatta.items()})
    return result


def discrepancies(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-output discrepancy: max absolute difference, relative to max |reference| for logits."""
    figures = {}
    for name, ref in reference.items():
        got = candidate[name]
        if got.shape != ref.shape:
            raise ExportError(f"output {name}: shape {got.shape} from ONNX Runtime, {ref.shape} from PyTorch")
        diff = float(np.abs(got.astype(ref.dtype) - ref).max()) if ref.size else 0.0
        if name == contract.LOGITS:
            diff /= max(float(np.abs(ref).max()), 1e-12)
        figures[name] = diff
    return figures


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], tol: dict) -> dict[str, float]:
    """Per-output discrepancy (abs, or relative for logits); raises ExportError past tol."""
    figures, failures = discrepancies(reference, candidate), []
    for name, diff in figures.items():
        limit = tol["logits_rel"] if name == contract.LOGITS else tol["abs"]
        if not diff <= limit:  # also catches NaN
            failures.append(f"{name} {diff:.2e} > {limit:.0e}")
    if failures:
        raise ExportError("ONNX Runtime disagrees with PyTorch: " + ", ".join(failures))
    return figures


def verification_cases(signature: ModelMetadata, images: np.ndarray, seed: int = 0):
    """(label, feeds) pairs: two batch sizes, default inputs omitted, per-image lesion masks,
    and a query bias."""
    rng = np.random.default_rng(seed)
    n_layers = len(signature.layers)
    for batch in (1, min(len(images), 7)):
        x = images[:batch]
        yield f"batch {batch}", {contract.IMAGE: x}
        if signature.baseline:
            continue
        masks = rng.integers(0, 2, (batch, n_layers)).astype(np.float32)
        masks[0] = 0.0  # an all-zero mask is the baseline
        yield f"batch {batch} + lesion masks", {contract.IMAGE: x, contract.LESION_MASK: masks}
        bias = rng.normal(size=(batch, signature.d)).astype(np.float32)
        yield f"batch {batch} + query bias", {contract.IMAGE: x,
                                              contract.LESION_MASK: contract.default_input(contract.LESION_MASK, batch, (n_layers,)),
                                              contract.QUERY_BIAS: bias}


def verify_export(model, signature: ModelMetadata, onnx_path: Path, images: np.ndarray,
                  fp16: bool = False) -> dict:
    """Run every case through PyTorch and ONNX Runtime: CPU provider with graph optimisations
    on and off, and the CUDA provider when it can run here. Returns the worst figure per
    output (overall and per provider) and the providers verified; raises ExportError with the
    figures on mismatch. An FP32 graph that misses the figures is judged against float64
    (``fp32_rounding``); the result then holds both distances under ``"fp32_rounding"``."""
    tol = FP16_TOL if fp16 else FP32_TOL
    sessions = {f"CPU, ORT optimisation {level}": ort_session(onnx_path, level) for level in ("all", "disable")}
    gpu, skipped = cuda_sessions(onnx_path)
    sessions.update(gpu)
    worst: dict[str, float] = {}
    by_provider: dict[str, dict[str, float]] = {}
    cases, runs, failure = 0, [], None
    for label, feeds in verification_cases(signature, images):
        reference = torch_outputs(model, signature, feeds)
        for where, session in sessions.items():
            got = dict(zip(signature.output_names, session.run(signature.output_names, feeds)))
            try:
                figures = compare(reference, got, tol)
            except ExportError as exc:
                if fp16:
                    raise ExportError(f"{exc} ({label}, {where})") from None
                figures = discrepancies(reference, got)
                if not all(np.isfinite(v) for v in figures.values()):  # NaN or Inf: no rounding explains it
                    raise ExportError(f"{exc} ({label}, {where})") from None
                failure = failure or f"{exc} ({label}, {where})"
            runs.append((feeds, reference, got))
            cases += 1
            provider = CUDA if where == "CUDA" else CPU
            for k, v in figures.items():
                worst[k] = _worst(worst.get(k, 0.0), v)
                by_provider.setdefault(provider, {})[k] = _worst(by_provider.get(provider, {}).get(k, 0.0), v)
    result = {"tolerance": tol, "worst": worst, "worst_by_provider": by_provider, "cases": cases,
              "providers": list(by_provider), "cuda_skipped": skipped}
    if failure is not None:
        result["fp32_rounding"] = fp32_rounding(model, signature, runs, worst, failure)
    return result


def _worst(current: float, value: float) -> float:
    """The larger of two discrepancies, NaN winning (``max(0.0, nan)`` is 0.0 in Python)."""
    return value if not value <= current else current


def fp32_rounding(model, signature: ModelMetadata, runs: list, worst: dict[str, float], failure: str) -> dict:
    """ONNX Runtime's and PyTorch FP32's distances from a float64 run of ``model`` on the same
    feeds, worst per output over ``runs`` ((feeds, PyTorch FP32 outputs, ONNX Runtime outputs)).
    Raises ExportError (``failure`` and the figures) unless ONNX Runtime is no further from
    float64 than ROUNDING_FACTOR x PyTorch's + ROUNDING_FLOOR on every output and ``worst``
    (ONNX Runtime against PyTorch FP32) is within ROUNDING_CEILING x FP32_TOL."""
    exact = copy.deepcopy(model).double()
    ort_err: dict[str, float] = {}
    torch_err: dict[str, float] = {}
    answers: dict[int, dict] = {}
    for feeds, reference, got in runs:
        key = id(feeds)  # each case's feeds are shared by its sessions' runs
        if key not in answers:
            answers[key] = torch_outputs(exact, signature, {k: v.astype(np.float64) for k, v in feeds.items()})
        for errors, candidate in ((ort_err, got), (torch_err, reference)):
            for k, v in discrepancies(answers[key], candidate).items():
                errors[k] = _worst(errors.get(k, 0.0), v)
    worse = [f"{k} {ort_err[k]:.2e} vs PyTorch FP32's {torch_err[k]:.2e}" for k in ort_err
             if not ort_err[k] <= ROUNDING_FACTOR * torch_err[k] + ROUNDING_FLOOR]
    far = [f"{k} {v:.2e}" for k, v in worst.items()
           if not v <= ROUNDING_CEILING * FP32_TOL["logits_rel" if k == contract.LOGITS else "abs"]]
    if worse or far:
        why = (f"further from float64 than {ROUNDING_FACTOR:g}x PyTorch FP32's rounding: {', '.join(worse)}" if worse
               else f"past {ROUNDING_CEILING:g}x the FP32 tolerance: {', '.join(far)}")
        raise ExportError(f"{failure}; ONNX Runtime is {why}")
    return {"ort_vs_float64": ort_err, "torch_fp32_vs_float64": torch_err, "factor": ROUNDING_FACTOR,
            "floor": ROUNDING_FLOOR, "first_miss": failure}
