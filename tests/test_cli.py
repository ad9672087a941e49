"""gatta-train: clear one-line errors and machine-readable summaries."""

import json

from click.testing import CliRunner

from gatta.training.cli import main

from helpers import make_checkpoint, write_image_folder


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_summary_json_counts():
    out = json.loads(run("summary", "--backbone", "toy", "--num-classes", "100", "--d", "32", "--json").output)
    assert out["backbone_params"] == 643_492 and out["attention_params"] == 37_445
    assert [l["name"] for l in out["layers"]] == ["conv1", "conv2", "conv3", "dense1", "logits"]


def test_missing_data_dir(tmp_path):
    r = run("backbone", "--data", tmp_path / "nope", "--out", tmp_path / "run")
    assert r.exit_code == 1 and r.output.strip() == f"Error: data path {tmp_path / 'nope'} does not exist"


def test_no_augment_with_an_augmentation_is_refused(tmp_path):
    r = run("backbone", "--data", "synthetic:16", "--out", tmp_path / "run", "--no-augment",
            "--augmentation", "shift-rotate-flip")
    assert r.exit_code == 2 and not (tmp_path / "run").exists()
    assert "--no-augment and --augmentation shift-rotate-flip contradict each other" in r.output


def test_class_count_mismatch(tmp_path):
    ckpt = make_checkpoint(tmp_path / "b.pt", num_classes=4, image_size=16)
    data = write_image_folder(tmp_path / "imgs", n_per_class=4)  # 3 classes
    r = run("head", "--backbone-ckpt", ckpt, "--data", data, "--out", tmp_path / "run")
    assert r.exit_code == 1
    assert "has 3 classes" in r.output and "trained for 4" in r.output
    r = run("eval", "--ckpt", ckpt, "--data", data)
    assert r.exit_code == 1 and "has 3 classes" in r.output


def test_bad_lesion_pattern(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=3, image_size=16)
    data = write_image_folder(tmp_path / "imgs", n_per_class=4)
    r = run("eval", "--ckpt", ckpt, "--data", data, "--lesion", "cc.d")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "'cc.d' has 4 characters" in r.output and "'cccdd'" in r.output


def test_eval_json_on_tiny_model(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=3, image_size=16, alpha=0.0)
    data = write_image_folder(tmp_path / "imgs", n_per_class=10)
    r = run("eval", "--ckpt", ckpt, "--data", data, "--split", "all", "--json", "--noise", "0",
            "--lesion", "c.cdd")
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)["rows"][0]
    assert row["n"] == 30
    # alpha = 0: GAttANet is exactly its backbone, lesioned or not
    assert row["gattanet_acc"] == row["baseline_acc"] == row["lesions"]["c.cdd"]
    assert row["gain"]["diff"] == 0.0


def test_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    r = run("eval", "--ckpt", bad, "--data", "synthetic:16")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and str(bad) in r.output


def test_head_training_can_start_from_a_shipped_checkpoint(tmp_path):
    import torch

    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=3, image_size=16, d=8, alpha=0.5)
    data = write_image_folder(tmp_path / "imgs", n_per_class=8)
    args = ("head", "--backbone-ckpt", ckpt, "--data", data, "--out", tmp_path / "run", "--epochs", "1",
            "--lr", "1e-9", "--val-size", "6", "--alpha-init", "0.5", "--no-augment", "--init-ckpt", ckpt)
    r = run(*args, "--d", "8")
    assert r.exit_code == 0, r.output
    alpha = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["state_dict"]["head.alpha"]
    assert torch.allclose(alpha, torch.full((5,), 0.5), atol=1e-4)  # started from the checkpoint's head
    r = run(*args, "--d", "4")
    assert r.exit_code == 1 and "config differs" in r.output
