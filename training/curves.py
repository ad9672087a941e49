"""Training curves from ``log.jsonl`` files: validation accuracy per epoch, a summary table and
a PNG. The summary also gives the mean over the last epochs, because the best epoch is picked
on the same validation split the report scores: its accuracy is a maximum over noisy epochs."""

from __future__ import annotations

import json
from pathlib import Path


def read_log(path: Path) -> list[dict]:
    try:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a gatta-train log (line {exc.lineno} is not JSON)") from None
    if not rows or any("epoch" not in r or "val_acc" not in r for r in rows):
        raise ValueError(f"{path}: not a gatta-train log (one JSON object per epoch with epoch, val_acc)")
    # A run resumed from an earlier last.pt may repeat epochs: the later record wins.
    return sorted({r["epoch"]: r for r in rows}.values(), key=lambda r: r["epoch"])


def summarize(rows: list[dict], last: int = 20) -> dict:
    """Best epoch, and means over the last ``last`` epochs (the gain too for head runs)."""
    best = max(rows, key=lambda r: r["val_acc"])
    tail = rows[-last:]
    out = {"epochs": rows[-1]["epoch"], "best_epoch": best["epoch"], "best_val_acc": best["val_acc"],
           "last": len(tail), "mean_val_acc_last": sum(r["val_acc"] for r in tail) / len(tail)}
    if all("val_baseline_acc" in r for r in rows):
        gains = [r["val_acc"] - r["val_baseline_acc"] for r in tail]
        out["baseline_acc"] = rows[-1]["val_baseline_acc"]
        out["mean_gain_last"] = sum(gains) / len(gains)
        out["share_above_baseline"] = sum(r["val_acc"] > r["val_baseline_acc"] for r in rows) / len(rows)
    return out


def curves_figure(logs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, rows) in enumerate(logs.items()):
        color = f"C{i}"
        ax.plot([r["epoch"] for r in rows], [100 * r["val_acc"] for r in rows], color=color, label=name, linewidth=1.2)
        if all("val_baseline_acc" in r for r in rows):
            ax.axhline(100 * rows[-1]["val_baseline_acc"], color=color, linestyle="--", linewidth=1,
                       label=f"{name}: its frozen baseline")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("training curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(summaries: dict[str, dict]) -> str:
    lines = ["| run | epochs | best (epoch) | mean of last epochs | mean gain over frozen baseline, last epochs | epochs above baseline |",
             "|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        gain = f"{100 * s['mean_gain_last']:+.2f} points" if "mean_gain_last" in s else "-"
        share = f"{100 * s['share_above_baseline']:.0f}%" if "share_above_baseline" in s else "-"
        lines.append(f"| {name} | {s['epochs']} | {100 * s['best_val_acc']:.2f}% ({s['best_epoch']}) | "
                     f"{100 * s['mean_val_acc_last']:.2f}% (last {s['last']}) | {gain} | {share} |")
    return "\n".join(lines) + "\n"
