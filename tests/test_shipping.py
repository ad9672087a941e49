"""Shipped checkpoints: half-precision backbone, FP32 head, and the FP32 model's logits on
validation pictures, against which every export verifies."""

import pytest
import torch
from click.testing import CliRunner

from gatta.export.exporter import ExportOptions, export_checkpoint
from gatta.export.verify import ExportError
from gatta.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from gatta.training.cli import main as train_main
from gatta.model.config import GattaConfig
from gatta.model.network import GattaNet
from gatta.training.runs import checkpoint_and_images
from gatta.training.shipping import REFERENCE_TOL, read_reference, ship_checkpoint

from helpers import tiny_imagenet


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory):
    """A ResNet18 GAttANet (random weights, alpha 0.5) 'trained' on a miniature Tiny-ImageNet,
    saved as training saves it: optimizer state included."""
    root = tmp_path_factory.mktemp("ship")
    data = tiny_imagenet(root / "tiny", per_class=10)
    torch.manual_seed(0)
    model = GattaNet(GattaConfig(backbone="resnet18", num_classes=3, d=8, image_size=32, alpha_init=0.5,
                                 qk_batchnorm=True, gatta_layernorm=True)).eval()
    opt = torch.optim.Adam(model.parameters())  # state as big as the weights, twice
    opt.state = {p: {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)} for p in model.parameters()}
    ckpt = save_checkpoint(root / "best.pt", model, {"stage": "head", "data": str(data), "val_size": 6, "split_seed": 0},
                           optimizer_state=opt.state_dict())
    return ckpt, data, model


def test_ship_halves_the_backbone_and_keeps_the_fp32_answers(resnet_ckpt, tmp_path):
    ckpt, data, model = resnet_ckpt
    out = tmp_path / "shipped.pt"
    result = CliRunner().invoke(train_main, ["ship", str(ckpt), "--out", str(out), "--probes", "4"])
    assert result.exit_code == 0, result.output
    assert "top-1 4/4" in result.output and "4 validation images of" in result.output

    payload = read_checkpoint(out)
    assert "optimizer" not in payload
    state = payload["state_dict"]
    backbone = [k for k, v in state.items() if k.startswith("backbone.") and v.is_floating_point()]
    head = [k for k, v in state.items() if not k.startswith("backbone.") and v.is_floating_point()]
    assert backbone and head
    stats = [k for k in backbone if "running_" in k]
    assert stats and all(state[k].dtype == torch.float32 for k in stats)  # a variance may pass fp16's 65504
    assert all(state[k].dtype == torch.float16 for k in backbone if k not in stats)
    assert all(state[k].dtype == torch.float32 for k in head)
    weights_fp32 = sum(v.numel() * 4 for v in model.state_dict().values())
    assert out.stat().st_size < 0.55 * weights_fp32  # ~11.2M backbone values at 2 bytes

    # the reference: validation pictures spread over the split (its classes) and the FP32 model's
    # logits on them
    ref = read_reference(out, model.config)
    _, dataset, val = checkpoint_and_images(ckpt, str(data))
    assert torch.equal(ref.images, dataset.images[val[[0, 2, 3, 5]]])  # 6 in the split, 2 per class
    assert len(set(dataset.labels[val[[0, 2, 3, 5]]].tolist())) == 3
    with torch.no_grad():
        assert torch.equal(ref.logits, model(ref.images.float().div(255)).logits)
        rounded = load_checkpoint(out)[0](ref.images.float().div(255)).logits
    moved = float((rounded - ref.logits).abs().max() / ref.logits.abs().max())
    assert 0 < moved <= REFERENCE_TOL["logits_rel"]  # rounding shows, within the limit


def test_export_verifies_against_the_fp32_reference(resnet_ckpt, tmp_path):
    ckpt, data, _ = resnet_ckpt
    shipped = tmp_path / "shipped.pt"
    ship_checkpoint(ckpt, shipped, probes=4)
    report = export_checkpoint(shipped, ExportOptions(out=tmp_path / "repo"))
    ref = report.verification["fp32_reference"]
    assert ref["n"] == 4 and ref["top1_agree"] == 4
    assert 0 < ref["logits_rel"] <= 1e-2 and ref["probs_abs"] <= 1e-2
    assert report.verification["images"].startswith("4 validation images")

    # a reference the model does not answer like: the export refuses, in one line, and writes nothing
    payload = read_checkpoint(shipped)
    logits = payload["reference"]["logits"]
    logits[0, 1] += 2 * float(logits.abs().max())  # one class of one picture
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(ExportError, match="disagrees with the FP32 model") as err:
        export_checkpoint(tmp_path / "tampered.pt", ExportOptions(out=tmp_path / "repo2"))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "repo2" / "gatta").exists()


def test_malformed_reference_is_one_line(resnet_ckpt, tmp_path):
    ckpt, _, _ = resnet_ckpt
    payload = read_checkpoint(ckpt)
    payload["reference"] = {"images": torch.zeros(2, 3, 4, 4), "logits": torch.zeros(2, 3)}  # float, not uint8
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="'reference' entry is malformed") as err:
        read_reference(tmp_path / "bad.pt")
    assert "\n" not in str(err.value)
    payload["reference"] = {"images": torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "logits": torch.zeros(2, 3)}
    torch.save(payload, tmp_path / "small.pt")  # well-formed, but not this model's 32 px input
    assert read_reference(tmp_path / "small.pt") is not None
    with pytest.raises(CheckpointError, match="malformed"):
        read_reference(tmp_path / "small.pt", GattaConfig.from_dict(payload["config"]))


def test_ship_refuses_what_it_cannot_do_safely(resnet_ckpt, tmp_path):
    ckpt, _, _ = resnet_ckpt
    with pytest.raises(CheckpointError, match="would overwrite"):
        ship_checkpoint(ckpt, ckpt)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ship_checkpoint(ckpt, tmp_path / "a.pt", data=str(tmp_path / "nowhere"))
    ship_checkpoint(ckpt, tmp_path / "a.pt", probes=2)
    with pytest.raises(CheckpointError, match="already shipped"):
        ship_checkpoint(tmp_path / "a.pt", tmp_path / "b.pt")
    assert not (tmp_path / "b.pt").exists() and not (tmp_path / "b.pt.tmp").exists()


def test_fp16_export_of_a_shipped_toy_model(tmp_path):
    """Rounded weights and half-precision compute together stay within the reference's 1e-2;
    without the checkpoint's data, the reference pictures are seeded random ones."""
    from helpers import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "toy.pt", num_classes=4, d=8, image_size=16, alpha=0.8)
    result = ship_checkpoint(ckpt, tmp_path / "shipped.pt", probes=8)
    assert result["source"].startswith("8 random images")
    report = export_checkpoint(tmp_path / "shipped.pt", ExportOptions(out=tmp_path / "repo", fp16=True))
    ref = report.verification["fp32_reference"]
    assert ref["n"] == 8 and 0 < ref["logits_rel"] <= 1e-2 and ref["probs_abs"] <= 1e-2
