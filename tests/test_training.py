"""Head training touches only K, Q, alpha; it learns; DDP equals single-process training."""

import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from gatta.training.data import synthetic_images
from gatta.training.train import FitOptions, fit, trainable_parameters

from helpers import make_model


def test_one_head_step_changes_only_head_parameters():
    model = make_model(alpha=0.0)
    params = trainable_parameters(model, "head")
    assert {id(p) for p in params} == {id(p) for p in model.head.parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert not model.backbone.training and model.head.training  # frozen backbone runs in eval
    opt = torch.optim.Adam(params, lr=1e-2)
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8) % 4
    F.cross_entropy(model(x).logits, y).backward()
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.") for k in changed)
    assert "head.alpha" in changed  # alpha starts at 0 and is the first thing to move
    assert all(p.grad is None for p in model.backbone.parameters())


def test_resnet_batchnorm_statistics_stay_frozen():
    from gatta.model.config import GattaConfig
    from gatta.model.network import GattaNet

    model = GattaNet(GattaConfig(backbone="resnet18", num_classes=3, d=4, image_size=32,
                                 qk_batchnorm=True, gatta_layernorm=True))
    params = trainable_parameters(model, "head")
    stats = {k: v.clone() for k, v in model.backbone.state_dict().items() if "running" in k}
    model.train()
    F.cross_entropy(model(torch.rand(4, 3, 32, 32)).logits, torch.tensor([0, 1, 2, 0])).backward()
    torch.optim.Adam(params).step()
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in stats.items())


def test_short_head_run_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    data = synthetic_images(192, 4, 16, seed=1)
    model = make_model(alpha=0.0)
    # A backbone that already sees the classes a little: train its logits layer briefly.
    fit(model, data, torch.arange(160), torch.arange(160, 192),
        FitOptions(stage="backbone", out_dir=tmp_path / "b", epochs=1, batch_size=32, lr=5e-4,
                   augmentation="none", progress=False))
    fit(model, data, torch.arange(160), torch.arange(160, 192),
        FitOptions(stage="head", out_dir=tmp_path / "h", epochs=4, batch_size=32, lr=1e-2,
                   augmentation="none", progress=False, patience=10))
    log = [json.loads(line) for line in open(tmp_path / "h" / "log.jsonl")]
    assert len(log) == 4
    assert log[-1]["train_loss"] < log[0]["train_loss"] - 0.01
    assert any(abs(a) > 1e-3 for a in log[-1]["alpha"])


def test_ddp_with_two_processes_equals_single_process(tmp_path):
    """2 gloo ranks at batch 16 each see the same images per step as 1 process at batch 32,
    so with dropout and augmentation off they must land on the same weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    common = ["--data", "synthetic:128:4", "--backbone-ckpt", str(tmp_path / "b" / "last.pt"),
              "--epochs", "2", "--no-augment", "--qk-dropout", "0", "--val-size", "32",
              "--lr", "0.01", "--alpha-init", "0.1", "--threads", "1",
              "--precision", "fp32"]  # exact equality is an fp32 property; bf16 rounds differently per shard
    cli = [sys.executable, "-m", "gatta.training.cli"]
    subprocess.run(cli + ["backbone", "--data", "synthetic:128:4", "--out", str(tmp_path / "b"),
                          "--epochs", "1", "--val-size", "32", "--image-size", "16"],
                   check=True, env=env, capture_output=True)
    subprocess.run(cli + ["head", *common, "--out", str(tmp_path / "single"), "--batch-size", "32"],
                   check=True, env=env, capture_output=True)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", "-m", "gatta.training.cli", "head", *common,
                          "--out", str(tmp_path / "ddp"), "--batch-size", "16"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    single = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["state_dict"]
    multi = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["state_dict"]
    diffs = {k: (single[k] - multi[k]).abs().max().item() for k in single if k.startswith("head.")}
    assert max(diffs.values()) < 1e-4, diffs
    moved = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state_dict"]
    assert not torch.equal(single["head.alpha"], torch.full_like(single["head.alpha"], 0.1))
    assert all(torch.equal(moved[k], multi[k]) for k in moved if k.startswith("backbone."))


def test_resume_continues_where_the_run_stopped(tmp_path):
    import torch

    data = synthetic_images(96, 4, 16, seed=3)
    model = make_model(alpha=0.1)
    opts = dict(stage="head", out_dir=tmp_path, batch_size=32, lr=1e-2, augmentation="none", progress=False)
    fit(model, data, torch.arange(64), torch.arange(64, 96), FitOptions(epochs=2, **opts))
    first = torch.load(tmp_path / "last.pt", weights_only=True)
    assert first["meta"]["epoch"] == 2 and "optimizer" in first
    resumed = make_model(alpha=0.1, seed=7)  # different init: everything must come from last.pt
    fit(resumed, data, torch.arange(64), torch.arange(64, 96), FitOptions(epochs=3, resume=True, **opts))
    log = [json.loads(l) for l in open(tmp_path / "log.jsonl")]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    # one more epoch from the saved state equals an uninterrupted 3-epoch run
    straight = make_model(alpha=0.1)
    fit(straight, data, torch.arange(64), torch.arange(64, 96),
        FitOptions(epochs=3, **{**opts, "out_dir": tmp_path / "straight"}))
    a = torch.load(tmp_path / "last.pt", weights_only=True)["state_dict"]["head.alpha"]
    b = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["state_dict"]["head.alpha"]
    assert torch.allclose(a, b, atol=1e-6)


def test_resume_applies_the_learning_rate_asked_for(tmp_path):
    data = synthetic_images(96, 4, 16, seed=3)
    opts = dict(stage="head", out_dir=tmp_path, batch_size=32, augmentation="none", progress=False)
    fit(make_model(alpha=0.1), data, torch.arange(64), torch.arange(64, 96), FitOptions(epochs=1, lr=1e-2, **opts))
    fit(make_model(alpha=0.1), data, torch.arange(64), torch.arange(64, 96),
        FitOptions(epochs=2, lr=1e-3, resume=True, **opts))
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["optimizer"]
    assert [g["lr"] for g in saved["param_groups"]] == [1e-3]
    assert [json.loads(l)["lr"] for l in open(tmp_path / "log.jsonl")] == [1e-2, 1e-3]


def test_resnet_backbone_from_scratch_sgd_cosine(tmp_path):
    """gatta-train backbone --backbone resnet18: SGD + cosine decay over --epochs, ImageNet
    statistics and evaluation transform in the checkpoint."""
    import json

    from gatta.model.checkpoint import load_checkpoint, read_checkpoint
    from gatta.training.runs import RunOptions, train_backbone

    opts = RunOptions(data="synthetic:96:3", out=tmp_path / "r18", epochs=3, val_size=24, batch_size=16,
                      augmentation="none", precision="fp32")
    train_backbone(opts, "resnet18", image_size=32, crop_pct=1.0)
    rows = [json.loads(l) for l in (tmp_path / "r18" / "log.jsonl").read_text().splitlines()]
    assert [round(r["lr"], 6) for r in rows] == [0.1, 0.075, 0.025]
    payload = read_checkpoint(tmp_path / "r18" / "last.pt")
    assert "momentum_buffer" in str(payload["optimizer"]["state"][0].keys())  # SGD with momentum
    model, _ = load_checkpoint(tmp_path / "r18" / "last.pt")
    prep = model.config.preprocessing
    assert model.config.backbone == "resnet18" and model.config.mean == (0.485, 0.456, 0.406)
    assert (prep.resize, prep.crop_pct) == ("crop", 1.0)


def test_cosine_rate_is_a_function_of_the_epoch_alone():
    """What lets --resume continue a schedule: fit sets each epoch's rate from the epoch number
    and the run's budget, never from the optimizer's saved state."""
    import pytest

    from gatta.training.train import FitOptions, epoch_lr

    opts = FitOptions(stage="backbone", out_dir=".", epochs=4, lr=0.2, schedule="cosine")
    assert [round(epoch_lr(opts, e), 6) for e in range(1, 5)] == [0.2, 0.170711, 0.1, 0.029289]
    assert epoch_lr(FitOptions(stage="backbone", out_dir=".", lr=1e-3), 40) == 1e-3
    with pytest.raises(ValueError, match="schedule 'step'"):
        epoch_lr(FitOptions(stage="backbone", out_dir=".", schedule="step"), 1)


def test_ddp_trains_a_backbone(tmp_path):
    """The backbone stage under torchrun: the head, which that stage's forward never reaches,
    must not wait for gradients (DDP: "Expected to have finished reduction ...")."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "gatta.training.cli", "backbone", "--data", "synthetic:96:4", "--out",
                          str(tmp_path / "b"), "--epochs", "2", "--val-size", "32", "--image-size", "16",
                          "--batch-size", "16", "--threads", "1"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    log = [json.loads(line) for line in open(tmp_path / "b" / "log.jsonl")]
    assert [r["epoch"] for r in log] == [1, 2]
