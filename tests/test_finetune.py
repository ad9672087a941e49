"""Joint fine-tuning, its backbone-only control, test-time iterations, paired comparisons,
device selection, mixed precision and the recipe defaults."""

import json

import pytest
import torch

from gatta.model.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from gatta.training.compare import compare_checkpoints
from gatta.training.data import synthetic_images
from gatta.model.recipe import recipe
from gatta.training.runs import RunOptions, finetune
from gatta.training.train import FitOptions, fit, resolve_device, trainable_parameters

from helpers import make_model


@pytest.fixture
def trained_pair(tmp_path):
    """A GAttANet checkpoint with a nonzero head, on 16x16 synthetic data (val split: 32)."""
    path = tmp_path / "pair.pt"
    model = make_model(alpha=0.3)
    save_checkpoint(path, model, CheckpointMeta(stage="head", data="synthetic:160:4", val_size=32))
    return path


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("what,moves,stays", [("joint", ("backbone.", "head."), ()),
                                              ("backbone", ("backbone.",), ("head.",))])
def test_finetune_trains_what_it_says(tmp_path, trained_pair, what, moves, stays):
    before = load_checkpoint(trained_pair)[0].state_dict()
    run = RunOptions(data="synthetic:160:4", out=tmp_path / what, epochs=2, augmentation="none",
                     batch_size=32)
    best = finetune(run, trained_pair, what)
    model, meta = load_checkpoint(tmp_path / what / "last.pt")
    changed = _changed(before, model.state_dict())
    for prefix in moves:
        assert any(k.startswith(prefix) for k in changed), prefix
    for prefix in stays:
        assert not any(k.startswith(prefix) for k in changed), prefix
    assert meta.finetune == what and meta.init_ckpt == str(trained_pair) and meta.val_size == 32
    log = [json.loads(line) for line in open(tmp_path / what / "log.jsonl")]
    assert [r["lr"] for r in log] == [1e-4, 1e-4]  # the recipe: 10x below the head's 1e-3
    assert [r["device"] for r in log] == ["cpu", "cpu"] and 0 <= best["val_acc"] <= 1
    # joint reports the changing backbone's own accuracy beside GAttANet's; the control does not
    assert ("val_baseline_acc" in log[0]) == (what == "joint")


def test_backbone_only_and_joint_see_the_same_data_order(tmp_path):
    """The control differs from the joint run only in what trains: every training step feeds
    the same augmented images in both; another seed feeds others."""
    data = synthetic_images(128, 4, 16, seed=4)

    def images_seen(stage: str, seed: int = 0) -> list[float]:
        model, seen = make_model(alpha=0.1), []

        def record(module, inputs):
            if module.training or stage == "joint" and model.head.training:
                seen.append(round(inputs[0].double().sum().item(), 6))

        model.backbone.stages[0].register_forward_pre_hook(record)
        fit(model, data, torch.arange(96), torch.arange(96, 128),
            FitOptions(stage=stage, out_dir=tmp_path / f"{stage}{seed}", epochs=2, batch_size=32,
                       seed=seed, progress=False))
        return seen

    joint = images_seen("joint")
    assert len(joint) == 6  # 2 epochs x 3 steps, stage 0 once per step
    assert joint == images_seen("backbone")
    assert joint != images_seen("backbone", seed=1)


def test_compare_pairs_entries_and_test_time_steps(trained_pair):
    report = compare_checkpoints([str(trained_pair), f"{trained_pair}@1", f"{trained_pair}@3"],
                                 "synthetic:160:4")
    same, one, three = report["rows"]
    assert report["n"] == 32 and [r["iterations"] for r in report["rows"]] == [1, 1, 3]
    assert same["gattanet_vs_ref_gattanet"] == {"diff": 0.0, "ci95": [0.0, 0.0], "only_b_right": 0, "only_a_right": 0}
    assert one["gattanet_acc"] == same["gattanet_acc"]
    assert three["baseline_acc"] == same["baseline_acc"]  # steps change GAttANet, not its backbone
    g = same["gattanet_vs_ref_baseline"]
    assert g["diff"] == pytest.approx(same["gattanet_acc"] - same["baseline_acc"])
    assert g["diff"] == pytest.approx((g["only_b_right"] - g["only_a_right"]) / 32)


def test_compare_refuses_bad_entries(trained_pair, tmp_path):
    from gatta.model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="number of attention steps"):
        compare_checkpoints([f"{trained_pair}@0"], "synthetic:160:4")
    other = tmp_path / "other.pt"
    save_checkpoint(other, make_model(), CheckpointMeta(val_size=40))
    with pytest.raises(ValueError, match="different validation splits"):
        compare_checkpoints([str(trained_pair), str(other)], "synthetic:160:4")


def test_device_auto_is_the_cpu_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU is available here"):
        resolve_device("cuda")


def test_cli_prints_and_logs_the_device(tmp_path, trained_pair):
    from click.testing import CliRunner

    from gatta.training.cli import main

    result = CliRunner().invoke(main, ["finetune", "--ckpt", str(trained_pair), "--train", "joint",
                                       "--data", "synthetic:160:4", "--out", str(tmp_path / "r"),
                                       "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith(f"device: {resolve_device('auto')}")
    assert json.loads(open(tmp_path / "r" / "log.jsonl").readline())["device"] == resolve_device("auto")


def test_a_non_finite_loss_stops_with_one_line(tmp_path):
    data = synthetic_images(64, 4, 16, seed=0)
    data.images[:] = 0
    model = make_model(alpha=0.5)
    with torch.no_grad():
        model.head.alpha.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="head epoch 1: the loss became nan after 0 images; lower --lr"):
        fit(model, data, torch.arange(48), torch.arange(48, 64),
            FitOptions(stage="head", out_dir=tmp_path, epochs=1, batch_size=16, progress=False))


def test_bf16_training_step_tracks_fp32(tmp_path):
    data = synthetic_images(128, 4, 16, seed=2)
    losses = {}
    for precision in ("fp32", "bf16"):
        fit(make_model(alpha=0.0), data, torch.arange(96), torch.arange(96, 128),
            FitOptions(stage="head", out_dir=tmp_path / precision, epochs=2, batch_size=32, lr=1e-2,
                       augmentation="none", progress=False, precision=precision))
        losses[precision] = [json.loads(l)["train_loss"] for l in open(tmp_path / precision / "log.jsonl")]
    assert losses["fp32"] != losses["bf16"]  # autocast really ran in bf16
    for a, b in zip(losses["fp32"], losses["bf16"]):
        assert abs(a - b) < 0.02


def test_recipe_defaults_are_the_papers():
    assert (recipe("head", "toy").lr, recipe("head", "toy").l2, recipe("head", "toy").batch_size) == (1e-3, 1e-5, 128)
    r = recipe("head", "resnet50")
    assert (r.lr, r.batch_size, r.l2, r.patience, r.qk_batchnorm, r.gatta_layernorm) == (3e-4, 8, 0.0, 1, True, True)
    assert recipe("backbone", "toy-wide").patience == 50
    assert recipe("joint", "toy").lr == pytest.approx(1e-4) and recipe("joint", "toy").patience is None
    assert recipe("finetune-backbone", "toy").l2 == 0.0
    r = recipe("backbone", "resnet18")  # from scratch, torchvision's reference recipe (not the paper's)
    assert (r.optimizer, r.schedule, r.lr, r.batch_size, r.l2, r.patience) == ("sgd", "cosine", 0.1, 128, 2.5e-4, None)
    assert (recipe("backbone", "toy").optimizer, recipe("backbone", "toy").schedule) == ("adam", "constant")


def test_checkpoint_meta_reads_old_and_partial_dicts():
    meta = CheckpointMeta.from_dict({"stage": "head", "epoch": 29, "something_old": 1})
    assert (meta.stage, meta.epoch, meta.val_size, meta.split_seed) == ("head", 29, 5000, 0)
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta


def test_joint_stage_unfreezes_what_head_froze():
    model = make_model()
    head_params = trainable_parameters(model, "head")
    assert not any(p.requires_grad for p in model.backbone.parameters())
    joint = trainable_parameters(model, "joint")
    assert len(joint) == len(list(model.parameters())) > len(head_params)
    model.train()
    assert model.backbone.training  # dropout back on for a backbone that trains


def test_precision_auto_is_bf16_only_where_it_was_measured():
    from gatta.training.train import resolve_precision

    assert resolve_precision("auto", "head", "cpu") == "bf16"
    assert [resolve_precision("auto", s, "cpu") for s in ("backbone", "joint")] == ["fp32", "fp32"]
    assert resolve_precision("auto", "head", "cuda") == "fp32"  # not measured on a GPU yet
    assert resolve_precision("auto", "head", "cpu", cpu_head_bf16=False) == "fp32"  # ResNet heads: not faster
    from gatta.model.families import family_of

    assert [family_of(b).cpu_head_bf16 for b in ("toy", "resnet18", "efficientnet_b0")] == [True, False, False]
    assert resolve_precision("fp32", "head", "cpu") == "fp32"


def test_cli_head_logs_the_precision_it_ran(tmp_path, trained_pair):
    from click.testing import CliRunner

    from gatta.training.cli import main

    for flag, expected in (([], "bf16" if resolve_device("auto") == "cpu" else "fp32"), (["--precision", "fp32"], "fp32")):
        out = tmp_path / f"r{len(flag)}"
        r = CliRunner().invoke(main, ["head", "--backbone-ckpt", str(trained_pair), "--data", "synthetic:160:4",
                                      "--out", str(out), "--epochs", "1", *flag])
        assert r.exit_code == 0, r.output
        assert json.loads(open(out / "log.jsonl").readline())["precision"] == expected
