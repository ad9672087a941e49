"""The report code on a tiny synthetic model: numbers consistent, figures written."""

import json

import numpy as np
import pytest
import torch

from gatta.training.data import synthetic_images
from gatta.training.report import build_report, mcnemar_p, query_space

from helpers import make_model


def test_mcnemar_exact_values():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_p(2, 12) == pytest.approx(0.01293, abs=1e-4)


def test_report_on_tiny_model(tmp_path):
    data = synthetic_images(96, 4, 16, seed=2)
    model = make_model(num_classes=4, d=8, image_size=16, alpha=0.5)
    report = build_report(model, data, torch.arange(96), tmp_path, noise_levels=(0.0, 0.1), umap=True,
                          echo=lambda m: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(report))  # the file holds what the call returned
    assert saved["n"] == 96 and [r["sigma"] for r in saved["noise"]] == [0.0, 0.1]
    acc = saved["accuracy"]
    assert acc["gain"]["diff"] == pytest.approx(acc["gattanet_acc"] - acc["baseline_acc"], abs=1e-6)
    assert list(saved["lesions"]) == [".ccdd", "c.cdd", "cc.dd", "ccc.d", "cccd.",
                                      "c....", ".c...", "..c..", "...d.", "....d"]
    assert all(0 <= v <= 1 for v in saved["lesions"].values())
    td = saved["top_down"]
    assert 0 <= td["true_prob_plain"] <= 1 and td["n"] == 96
    strengths = [td["strength"]] + [r["strength"] for r in saved["top_down_strengths"]]
    assert sorted(strengths) == [0.1, 0.3, 0.5, 1.0, 3.0] and td["strength"] == 0.3  # the client's default
    for name in ("noise.png", "lesions.png", "top_down.png", "q_avg_umap.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert "McNemar" in (tmp_path / "report.md").read_text()


def test_query_space_probe_separates_clean_clusters():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    queries = rng.normal(size=(200, 4)) * 0.1 + labels[:, None] * 1.0  # one cluster per class
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    result = query_space(queries, labels, names)
    assert result["class_probe_acc"] > 0.9 and result["vehicle_share"] == 0.4


def test_training_curves_summary_and_cli(tmp_path):
    import subprocess
    import sys

    from gatta.training.curves import read_log, summarize

    log = tmp_path / "head" / "log.jsonl"
    log.parent.mkdir()
    accs = [0.70, 0.74, 0.72, 0.75, 0.73]
    rows = [{"epoch": e, "val_acc": a, "val_baseline_acc": 0.72} for e, a in enumerate(accs, 1)]
    # a resumed run repeats epoch 5: the later record wins
    log.write_text("\n".join(json.dumps(r) for r in rows + [{"epoch": 5, "val_acc": 0.71, "val_baseline_acc": 0.72}]) + "\n")
    s = summarize(read_log(log), last=3)
    assert (s["epochs"], s["best_epoch"], s["best_val_acc"]) == (5, 4, 0.75)
    assert s["mean_val_acc_last"] == pytest.approx((0.72 + 0.75 + 0.71) / 3)
    assert s["mean_gain_last"] == pytest.approx((0.00 + 0.03 - 0.01) / 3)
    assert s["share_above_baseline"] == pytest.approx(2 / 5)
    png = tmp_path / "curves.png"
    r = subprocess.run([sys.executable, "-m", "gatta.training.cli", "curves", str(log), "--last", "3", "--out", str(png)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| head | 5 | 75.00% (4) | 72.67% (last 3) | +0.67 points | 40% |" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"loss": 1}\n')
    r = subprocess.run([sys.executable, "-m", "gatta.training.cli", "curves", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "not a gatta-train log" in r.stderr and "Traceback" not in r.stderr
