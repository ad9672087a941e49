"""Several checkpoints on the same validation images, with paired confidence intervals.

Each entry is ``PATH`` or ``PATH@T`` (run the checkpoint with T attention steps at test time).
Every entry yields two systems, its backbone alone (``baseline``) and GAttANet; each is compared
image by image with the first entry's systems, so "does X beat the shipped pair?" is one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from gatta.model.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint
from .data import ImageSet
from .evaluate import paired_bootstrap
from gatta.model.network import GattaNet
from .data import load_dataset
from .runs import in_trained_classes, split_data
from .train import predict


@dataclass
class Entry:
    label: str  # as given on the command line
    model: GattaNet
    split: tuple[int, int]  # (val_size, split_seed) the checkpoint was trained with
    meta: CheckpointMeta = field(default_factory=CheckpointMeta)


def parse_entry(spec: str, device: str = "cpu") -> Entry:
    """``runs/head/best.pt@2`` -> that checkpoint run with 2 attention steps."""
    path, _, steps = spec.partition("@")
    model, meta = load_checkpoint(Path(path), device)
    if steps:
        if not steps.isdigit() or int(steps) < 1:
            raise CheckpointError(f"{spec}: the part after '@' is the number of attention steps (a positive integer)")
        model.config.iterations = int(steps)
    return Entry(spec, model, (meta.val_size, meta.split_seed), meta)


def compare(entries: list[Entry], data: ImageSet, indices: torch.Tensor, batch_size: int = 256,
            noise_sigma: float = 0.0, device: str = "cpu") -> dict:
    """Accuracies of every entry's baseline and GAttANet, and their paired differences with
    the first entry's baseline and GAttANet (95% bootstrap CI, McNemar counts)."""
    splits = {e.split for e in entries}
    if len(splits) > 1:
        raise ValueError(f"checkpoints were trained with different validation splits {sorted(splits)}: "
                         "their accuracies are not paired")
    correct = {e.label: predict(e.model, data, indices, batch_size, noise_sigma, device=device) for e in entries}
    ref = correct[entries[0].label]
    rows = []
    for e in entries:
        c = correct[e.label]
        rows.append({
            "entry": e.label, "iterations": e.model.config.iterations,
            "baseline_acc": c["baseline"].float().mean().item(),
            "gattanet_acc": c["gattanet"].float().mean().item(),
            "gattanet_vs_ref_baseline": paired_bootstrap(ref["baseline"], c["gattanet"]),
            "gattanet_vs_ref_gattanet": paired_bootstrap(ref["gattanet"], c["gattanet"]),
            "baseline_vs_ref_baseline": paired_bootstrap(ref["baseline"], c["baseline"]),
        })
    return {"n": len(indices), "noise": noise_sigma, "reference": entries[0].label, "rows": rows}


def compare_checkpoints(specs: list[str], data: str, noise_sigma: float = 0.0, batch_size: int = 256,
                        device: str = "cpu", num_workers: int = 2) -> dict:
    """``compare`` for checkpoint specs (``PATH`` or ``PATH@T``) on their validation split of ``data``."""
    entries = [parse_entry(spec, device) for spec in specs]
    first = entries[0].model
    dataset = load_dataset(data, first.config.preprocessing, num_workers)
    dataset = in_trained_classes(dataset, data, first, entries[0].meta, specs[0])
    indices = split_data(dataset, *entries[0].split)[1]
    return compare(entries, dataset, indices, batch_size, noise_sigma, device)


def comparison_table(report: dict) -> str:
    def gain(g: dict) -> str:
        return f"{100 * g['diff']:+6.2f} [{100 * g['ci95'][0]:+.2f}, {100 * g['ci95'][1]:+.2f}]"

    lines = [f"{report['n']} validation images, noise {report['noise']}; reference: {report['reference']} "
             "(paired differences in points, 95% bootstrap CI)",
             f"{'entry':<40} {'T':>2} {'backbone':>9} {'gattanet':>9}  {'gattanet - ref gattanet':<26} "
             f"{'gattanet - ref backbone':<26} backbone - ref backbone"]
    for r in report["rows"]:
        lines.append(f"{r['entry']:<40} {r['iterations']:>2} {100 * r['baseline_acc']:>8.2f}% "
                     f"{100 * r['gattanet_acc']:>8.2f}%  {gain(r['gattanet_vs_ref_gattanet']):<26} "
                     f"{gain(r['gattanet_vs_ref_baseline']):<26} {gain(r['baseline_vs_ref_baseline'])}")
    return "\n".join(lines)
