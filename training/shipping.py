"""Checkpoints made to ship: the training state dropped, the backbone's weights stored in half
precision, and the FP32 model's own outputs on a few validation pictures kept beside them.

A ResNet18 is 45 MB in FP32 and 22 MB with its backbone's parameters in half precision; its
batch-norm statistics and the trained head (K, Q, alpha, the norms: ~70K values) stay FP32, and
loading upcasts every weight to FP32 anyway. Rounding the backbone is not free, so the shipped
file carries a *reference*: uint8 pictures and the logits the FP32 model gave for them. Every
export of the full model from the file (not a ``--baseline`` export: other logits), and ``gatta-train
ship`` itself, checks the model it builds against those logits, not against the rounded copy,
so "verified" keeps meaning "answers like the model that was trained".

The reference, in the checkpoint's payload (plain tensors and strings: weights_only loads it)::

    "reference": {"images": uint8 [N, 3, S, S], "logits": float32 [N, classes],
                  "source": "16 validation images of DATA", "weights": "float32"}
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gatta.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from .layouts import source_kind
from gatta.model.reference import REFERENCE_TOL, Reference, against_reference, read_reference  # noqa: F401 (re-exported)

HALF_PREFIX = "backbone."  # the frozen CNN: everything else is the trained head


def reference_pictures(ckpt: Path, data: str, n: int, num_workers: int = 2) -> tuple[torch.Tensor, str]:
    """``n`` pictures of the checkpoint's validation split spread evenly over it (so over its
    classes: the split is in class order), through its evaluation transform, as uint8."""
    from .runs import checkpoint_and_images

    _, dataset, val = checkpoint_and_images(ckpt, data, num_workers=num_workers)
    pick = val[torch.linspace(0, len(val) - 1, min(n, len(val))).round().long()]
    return dataset.pictures(pick), f"{len(pick)} validation images of {data}"


@torch.no_grad()
def ship_checkpoint(src: str | Path, dst: str | Path, data: str | None = None, half: bool = True,
                    probes: int = 16, num_workers: int = 2) -> dict:
    """Write ``dst``: ``src`` without optimizer and RNG state, the backbone in half precision
    (``half``), and the FP32 model's logits on ``probes`` validation pictures of ``data`` (the
    checkpoint's own dataset by default; random pictures if it is not on this machine). Checks
    the written file against that reference and returns the figures."""
    src, dst = Path(src), Path(dst)
    if probes < 1:
        raise ValueError(f"--probes {probes}: at least one reference picture is needed")
    if dst.resolve() == src.resolve():
        raise CheckpointError(f"{dst}: would overwrite the checkpoint it is made from; give another --out")
    payload = read_checkpoint(src)
    if "reference" in payload:
        raise CheckpointError(f"{src}: already shipped (its weights may be rounded); ship the training "
                              "checkpoint it came from")
    model, meta = load_checkpoint(src)
    if data and source_kind(data) != "synthetic" and not Path(data).exists():
        raise FileNotFoundError(f"--data {data} does not exist")
    data = data or meta.data
    if data and source_kind(data) != "synthetic" and Path(data).exists():
        images, source = reference_pictures(src, data, probes, num_workers)
    else:
        size = model.config.image_size
        images = torch.randint(0, 256, (probes, 3, size, size), generator=torch.Generator().manual_seed(0),
                               dtype=torch.uint8)
        source = f"{probes} random images (the checkpoint's data, {data or 'unknown'}, is not on this machine)"
    reference = Reference(images, model(images.float().div(255)).logits.float(), source)

    state = payload["state_dict"]
    if half:  # the backbone's parameters; its batch-norm statistics stay FP32 (a variance may pass 65504)
        params = {name for name, _ in model.named_parameters() if name.startswith(HALF_PREFIX)}
        state = {k: v.half() if k in params else v for k, v in state.items()}
    shipped = {k: payload[k] for k in ("format", "format_version", "config", "meta")}
    shipped["state_dict"] = state
    shipped["reference"] = {"images": reference.images, "logits": reference.logits, "source": source,
                            "weights": "float32"}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    try:  # checked before it takes dst's place: a failure leaves dst as it was
        torch.save(shipped, tmp)
        rounded, _ = load_checkpoint(tmp)
        check = against_reference(rounded(reference.images.float().div(255)).logits.numpy(), reference)
        if not check["ok"]:
            raise CheckpointError(f"{src}: half-precision weights move its outputs too far ({_figures(check)}); "
                                  "ship it with --no-half")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return {"source": source, "bytes_in": src.stat().st_size, "bytes_out": dst.stat().st_size,
            "half": half, "check": check}


def _figures(check: dict) -> str:
    return (f"logits rel {check['logits_rel']:.1e}, probs abs {check['probs_abs']:.1e}, "
            f"top-1 {check['top1_agree']}/{check['n']}")
