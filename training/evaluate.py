"""Evaluation reports: baseline vs GAttANet accuracy under noise and lesions, with a paired
bootstrap confidence interval on the difference (5,000 images make a few tenths noise)."""

from __future__ import annotations

import torch

from gatta.lesion import full_pattern, parse_lesion, single_layer_patterns

from .data import ImageSet
from gatta.model.network import GattaNet
from .train import predict


def paired_bootstrap(a: torch.Tensor, b: torch.Tensor, samples: int = 2000, seed: int = 0) -> dict:
    """Difference of accuracies b - a on the same images, 95% CI by resampling images."""
    g = torch.Generator().manual_seed(seed)
    diff = b.float() - a.float()
    idx = torch.randint(0, len(diff), (samples, len(diff)), generator=g)
    boot = diff[idx].mean(1)
    lo, hi = torch.quantile(boot, torch.tensor([0.025, 0.975])).tolist()
    # McNemar counts: images only one of the two gets right.
    return {"diff": diff.mean().item(), "ci95": [lo, hi],
            "only_b_right": int(((b) & (~a)).sum()), "only_a_right": int(((a) & (~b)).sum())}


def run_evaluation(model: GattaNet, data: ImageSet, indices: torch.Tensor, noise_levels,
                   lesions=(), batch_size: int = 256, device="cpu") -> dict:
    kinds = model.layer_kinds
    patterns = []
    for p in lesions:
        patterns.extend(single_layer_patterns(kinds) if p == "singles" else [p])
    masks = {p: parse_lesion(p, kinds) for p in patterns}
    rows = []
    for sigma in noise_levels:
        correct = predict(model, data, indices, batch_size, sigma, masks, device)
        row = {"noise": sigma, "n": len(indices),
               "baseline_acc": correct["baseline"].float().mean().item(),
               "gattanet_acc": correct["gattanet"].float().mean().item(),
               "gain": paired_bootstrap(correct["baseline"], correct["gattanet"])}
        row["lesions"] = {p: correct[p].float().mean().item() for p in patterns}
        rows.append(row)
    return {"layers": model.layer_names, "full_pattern": full_pattern(kinds),
            "rows": rows}


def evaluation_table(report: dict) -> str:
    lines = [f"{'noise':>6} {'n':>6} {'baseline':>9} {'gattanet':>9} {'gain':>7}  95% CI"]
    for r in report["rows"]:
        g = r["gain"]
        lines.append(f"{r['noise']:>6.3f} {r['n']:>6} {100 * r['baseline_acc']:>8.2f}% "
                     f"{100 * r['gattanet_acc']:>8.2f}% {100 * g['diff']:>+6.2f}  "
                     f"[{100 * g['ci95'][0]:+.2f}, {100 * g['ci95'][1]:+.2f}]")
    for r in report["rows"]:
        if r["lesions"]:
            lines.append(f"\nlesions at noise {r['noise']}:")
            lines.append(f"  {report['full_pattern']:<10} {100 * r['gattanet_acc']:.2f}%  (full)")
            lines.append(f"  {'.' * len(report['full_pattern']):<10} {100 * r['baseline_acc']:.2f}%  (baseline)")
            for p, acc in r["lesions"].items():
                lines.append(f"  {p:<10} {100 * acc:.2f}%")
    return "\n".join(lines)
