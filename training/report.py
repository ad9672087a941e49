"""The paper's analyses on a trained checkpoint: accuracy with a paired confidence interval,
noise robustness (Fig. 2a), lesions (Fig. 4c), the q_avg query space (Fig. 2b) and top-down
attention through ``query_bias``. Writes ``results.json``, ``report.md`` and PNG figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from gatta.contract import class_directions
from gatta.lesion import full_pattern, parse_lesion, single_layer_patterns

from .dataset import ImageSet
from .evaluate import paired_bootstrap
from gatta.model.network import GattaNet
from .train import predict

NOISE_LEVELS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.25)
# CIFAR-10 / CIFAR-100 superclass split the paper discusses (Fig. 2b)
VEHICLES = {"airplane", "automobile", "ship", "truck"}


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test on the discordant pairs."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@torch.no_grad()
def collect_queries(model: GattaNet, data: ImageSet, indices: torch.Tensor, device="cpu") -> np.ndarray:
    model.eval()
    out = [model(x, return_maps=True).q_avg.cpu() for x, _ in data.eval_batches(indices, 256, device)]
    return torch.cat(out).numpy()


@torch.no_grad()
def top_down_effect(model: GattaNet, data: ImageSet, indices: torch.Tensor, strength: float = 0.3,
                    device="cpu", seed: int = 0) -> dict:
    """Bias q_avg towards the true class (strength * dir_c / |dir_c|^2 with dir_c = sign(alpha
    of the logits layer) * K_c, as the exported metadata and the client do) and, for
    contrast, towards a random wrong class; report the true class's probability."""
    model.eval()
    keys = class_directions(model.head.keys[-1].weight.t(), model.head.alpha[-1].item())  # [classes, d]
    unit = keys / (keys * keys).sum(1, keepdim=True).clamp_min(1e-12)
    g = torch.Generator().manual_seed(seed)
    plain, toward, away, acc = [], [], [], {"plain": 0, "toward": 0, "away": 0}
    for x, y in data.eval_batches(indices, 256, device):
        wrong = (y + torch.randint(1, model.config.num_classes, y.shape, generator=g).to(y.device)) % model.config.num_classes
        for name, bias, store in (("plain", None, plain), ("toward", strength * unit[y], toward),
                                  ("away", strength * unit[wrong], away)):
            probs = torch.softmax(model(x, query_bias=bias).logits, 1)
            store.append(probs.gather(1, y[:, None]).squeeze(1).cpu())
            acc[name] += (probs.argmax(1) == y).sum().item()
    plain, toward, away = torch.cat(plain), torch.cat(toward), torch.cat(away)
    n = len(plain)
    return {"strength": strength, "n": n,
            "true_prob_plain": plain.mean().item(), "true_prob_toward_true": toward.mean().item(),
            "true_prob_toward_wrong": away.mean().item(),
            "share_raised_toward_true": (toward > plain).float().mean().item(),
            "acc_plain": acc["plain"] / n, "acc_toward_true": acc["toward"] / n, "acc_toward_wrong": acc["away"] / n}


def query_space(queries: np.ndarray, labels: np.ndarray, class_names: list[str], seed: int = 0) -> dict:
    """How well q_avg separates classes and animals vs vehicles (5-fold logistic regression)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    result = {"class_probe_acc": float(cross_val_score(LogisticRegression(max_iter=2000), queries, labels, cv=5).mean())}
    if VEHICLES <= set(class_names):
        vehicle = np.array([class_names[i] in VEHICLES for i in labels])
        result["vehicle_probe_acc"] = float(cross_val_score(LogisticRegression(max_iter=2000), queries, vehicle, cv=5).mean())
        result["vehicle_share"] = float(vehicle.mean())
    return result


def umap_figure(queries, labels, class_names, path: Path, seed: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import umap

    emb = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed).fit_transform(queries)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for c, name in enumerate(class_names):
        pts = emb[labels == c]
        marker = "^" if name in VEHICLES else "o"
        ax.scatter(pts[:, 0], pts[:, 1], s=3, color=cmap(c % cmap.N), marker=marker, label=f"{c} {name}", alpha=0.6)
    ax.legend(markerscale=4, fontsize=7, loc="best")
    ax.set_title("UMAP of q_avg (validation images); triangles = vehicles")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def line_figure(xs, series: dict[str, list[float]], xlabel: str, path: Path, logx: bool = False, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, ys in series.items():
        ax.plot(xs, [100 * y for y in ys], marker="o", label=name)
    if logx:
        ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bar_figure(names: list[str], values: list[float], reference: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.bar(range(len(names)), [100 * v for v in values], color="#4393c3")
    for label, value in reference.items():
        ax.axhline(100 * value, linestyle="--", linewidth=1, color="#d6604d" if "full" in label else "black", label=label)
    ax.set_xticks(range(len(names)), names, rotation=45, fontfamily="monospace")
    lo = min(values + list(reference.values()))
    hi = max(values + list(reference.values()))
    ax.set_ylim(100 * lo - 1, 100 * hi + 0.5)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("lesions ('.' = no attention on that layer)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Top-down prior strengths measured (the client's default 0.3 among them): from a gentle nudge to
# the viewer slider's end, since the useful range is a property of the model (docs/results.md).
TOP_DOWN_STRENGTHS = (0.1, 0.3, 0.5, 1.0, 3.0)


def build_report(model: GattaNet, data: ImageSet, indices: torch.Tensor, out: Path, noise_levels=NOISE_LEVELS,
                 umap: bool = True, device="cpu", echo=print) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    kinds = model.layer_kinds
    patterns = single_layer_patterns(kinds)
    masks = {p: parse_lesion(p, kinds) for p in patterns}
    report: dict = {"n": len(indices), "layers": model.layer_names, "noise": [], "lesions": {}}
    for sigma in noise_levels:
        echo(f"noise sigma {sigma}")
        correct = predict(model, data, indices, 256, sigma, masks if sigma == 0 else None, device)
        gain = paired_bootstrap(correct["baseline"], correct["gattanet"])
        gain["mcnemar_p"] = mcnemar_p(gain["only_a_right"], gain["only_b_right"])
        report["noise"].append({"sigma": sigma, "baseline_acc": correct["baseline"].float().mean().item(),
                                "gattanet_acc": correct["gattanet"].float().mean().item(), "gain": gain})
        if sigma == 0:
            report["accuracy"] = report["noise"][-1]
            report["lesions"] = {p: correct[p].float().mean().item() for p in patterns}
    echo("top-down attention (query_bias)")
    report["top_down"] = top_down_effect(model, data, indices, device=device)
    report["top_down_strengths"] = [top_down_effect(model, data, indices, strength=s, device=device)
                                    for s in TOP_DOWN_STRENGTHS if s != report["top_down"]["strength"]]
    echo("query space")
    labels = data.labels[indices].numpy()
    queries = collect_queries(model, data, indices, device)
    report["query_space"] = query_space(queries, labels, data.class_names)
    report["alpha"] = model.head.alpha.tolist()
    sig = [r["sigma"] for r in report["noise"]]
    line_figure(sig, {"baseline": [r["baseline_acc"] for r in report["noise"]],
                      "GAttANet": [r["gattanet_acc"] for r in report["noise"]]},
                "Gaussian noise sigma (pixel scale [0, 1])", out / "noise.png", logx=True,
                title="accuracy under noise (paper Fig. 2a)")
    acc = report["accuracy"]
    bar_figure(patterns, [report["lesions"][p] for p in patterns],
               {f"full ({full_pattern(kinds)})": acc["gattanet_acc"],
                "baseline (" + "." * len(kinds) + ")": acc["baseline_acc"]}, out / "lesions.png")
    sweep = sorted([report["top_down"], *report["top_down_strengths"]], key=lambda r: r["strength"])
    line_figure([0.0] + [r["strength"] for r in sweep],
                {"prior towards the true class": [acc["gattanet_acc"]] + [r["acc_toward_true"] for r in sweep],
                 "prior towards a wrong class": [acc["gattanet_acc"]] + [r["acc_toward_wrong"] for r in sweep]},
                "prior strength (query_bias = strength * dir / |dir|^2)", out / "top_down.png", logx=True,
                title="top-down prior: where it helps and where it breaks")
    if umap:
        echo("UMAP")
        umap_figure(queries, labels, data.class_names, out / "q_avg_umap.png")
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report, kinds))
    return report


def markdown(report: dict, kinds) -> str:
    acc = report["accuracy"]
    g = acc["gain"]
    full = full_pattern(kinds)
    lines = [f"Validation images: {report['n']}", "",
             "| model | accuracy |", "|---|---|",
             f"| frozen baseline (`{'.' * len(kinds)}`) | {100 * acc['baseline_acc']:.2f}% |",
             f"| GAttANet (`{full}`) | {100 * acc['gattanet_acc']:.2f}% |",
             f"| difference | {100 * g['diff']:+.2f} points, 95% CI [{100 * g['ci95'][0]:+.2f}, {100 * g['ci95'][1]:+.2f}], "
             f"McNemar p = {g['mcnemar_p']:.3g} ({g['only_b_right']} images only GAttANet gets right, "
             f"{g['only_a_right']} only the baseline) |", "",
             "| noise sigma | baseline | GAttANet | gain | 95% CI |", "|---|---|---|---|---|"]
    for r in report["noise"]:
        lines.append(f"| {r['sigma']} | {100 * r['baseline_acc']:.2f}% | {100 * r['gattanet_acc']:.2f}% | "
                     f"{100 * r['gain']['diff']:+.2f} | [{100 * r['gain']['ci95'][0]:+.2f}, {100 * r['gain']['ci95'][1]:+.2f}] |")
    lines += ["", "| lesion pattern | accuracy |", "|---|---|"]
    lines += [f"| `{p}` | {100 * v:.2f}% |" for p, v in report["lesions"].items()]
    td = report["top_down"]
    qs = report["query_space"]
    lines += ["", f"Top-down attention (query_bias, strength {td['strength']}): mean true-class probability "
              f"{td['true_prob_plain']:.4f} plain, {td['true_prob_toward_true']:.4f} biased towards the true class "
              f"(raised for {100 * td['share_raised_toward_true']:.1f}% of images), {td['true_prob_toward_wrong']:.4f} "
              f"biased towards a wrong class; accuracy {100 * td['acc_plain']:.2f}% / {100 * td['acc_toward_true']:.2f}% / "
              f"{100 * td['acc_toward_wrong']:.2f}%."]
    for other in report.get("top_down_strengths", []):
        lines.append(f"At strength {other['strength']}: true-class probability {other['true_prob_plain']:.4f} -> "
                     f"{other['true_prob_toward_true']:.4f} (towards the true class) / {other['true_prob_toward_wrong']:.4f} "
                     f"(towards a wrong class); accuracy {100 * other['acc_toward_true']:.2f}% / {100 * other['acc_toward_wrong']:.2f}%.")
    lines += ["",
              f"Query space: a linear probe on q_avg predicts the class with {100 * qs['class_probe_acc']:.1f}% accuracy"
              + (f" and animal vs vehicle with {100 * qs['vehicle_probe_acc']:.1f}% (majority {100 * max(qs['vehicle_share'], 1 - qs['vehicle_share']):.1f}%)"
                 if "vehicle_probe_acc" in qs else "") + " (5-fold cross-validation).", "",
              "alpha per layer: " + ", ".join(f"{n} {a:+.4f}" for n, a in zip(report["layers"], report["alpha"]))]
    return "\n".join(lines) + "\n"
