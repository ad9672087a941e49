"""Every backbone family (model/families/), each through one example: the attach rule's nodes,
the head sized from them with Table 1's count, alpha = 0 equal to the backbone exactly, one
training epoch through the CLI, and the errors a user meets (unknown name, a state dict that does
not fit). Export with ONNX Runtime parity: test_export.py; served: test_families_serving.py."""

import json

import pytest
import torch
from click.testing import CliRunner

from gatta.model.config import GattaConfig
from gatta.model.families import FAMILIES, family_of
from gatta.model.network import GattaNet

# The attach rule's pick per example (docs/backbones.md's table): (tap name, node, kind, channels)
ATTACHED = {
    "resnet18": ["stem", "layer1", "layer2", "layer3", "avgpool", "logits"],
    "convnext_tiny": ["features_1", "features_3", "features_5", "pre_logits", "logits"],
    "efficientnet_b0": ["features_0", "features_2", "features_3", "features_5", "pre_logits", "logits"],
    "mobilenet_v3_small": ["features_0", "features_1", "features_3", "features_8", "pre_logits", "logits"],
    "regnet_x_400mf": ["stem", "trunk_output_block1", "trunk_output_block2", "trunk_output_block3", "pre_logits",
                       "logits"],
    "densenet121": ["features_relu0", "features_denseblock1", "features_denseblock2", "features_denseblock3",
                    "pre_logits", "logits"],
    "vgg11_bn": ["features_6", "features_13", "features_20", "pre_logits", "logits"],
    "timm:resnet18": ["act1", "layer1", "layer2", "layer3", "pre_logits", "logits"],
    "timm:convnext_atto": ["stages_0", "stages_1", "stages_2", "pre_logits", "logits"],
    "timm:efficientnet_b0": ["blocks_0", "blocks_1", "blocks_2", "blocks_4", "pre_logits", "logits"],
}
# channels of each conv tap and units of the dense ones, at 10 classes
WIDTHS = {
    "resnet18": [64, 64, 128, 256, 512, 10], "convnext_tiny": [96, 192, 384, 768, 10],
    "efficientnet_b0": [32, 24, 40, 112, 1280, 10], "mobilenet_v3_small": [16, 16, 24, 48, 1024, 10],
    "regnet_x_400mf": [32, 32, 64, 160, 400, 10], "densenet121": [64, 256, 512, 1024, 1024, 10],
    "vgg11_bn": [128, 256, 512, 4096, 10], "timm:resnet18": [64, 64, 128, 256, 512, 10],
    "timm:convnext_atto": [40, 80, 160, 320, 10], "timm:efficientnet_b0": [16, 24, 40, 112, 1280, 10],
}
EXAMPLES = list(ATTACHED)
SIZE = 32  # small inputs: every family here narrows 32 px to a 1x1 map at stride 32


def build(name: str, alpha: float = 0.0, seed: int = 0, **kw) -> GattaNet:
    torch.manual_seed(seed)
    family = family_of(name)
    return GattaNet(GattaConfig(backbone=name, num_classes=10, image_size=SIZE, d=family.d, alpha_init=alpha,
                                qk_batchnorm=family.head_recipe.qk_batchnorm,
                                gatta_layernorm=family.head_recipe.gatta_layernorm, **kw)).eval()


def test_every_family_has_an_example_here():
    covered = {family_of(name).name for name in EXAMPLES}
    assert covered == {f.name for f in FAMILIES} - {"toy"}
    assert all(name in EXAMPLES for f in FAMILIES for name in f.examples if f.name != "toy")


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_rule_attaches_where_the_table_says_and_alpha_zero_is_the_backbone(name):
    model = build(name)
    assert model.layer_names == ATTACHED[name]
    assert [t.channels for t in model.taps] == WIDTHS[name]
    assert model.layer_kinds[-2:] == ["dense", "dense"] and set(model.layer_kinds[:-2]) == {"conv"}
    # the conv taps narrow by 2 each (strides 2, 4, 8, 16, or 4, 8, 16 where the stem is strided 4)
    sides = [t.shape[1] for t in model.taps if t.kind == "conv"]
    assert all(a == 2 * b for a, b in zip(sides, sides[1:]))
    assert sides[-1] == SIZE // (8 if name.startswith("vgg") else 16)  # VGG's stride-16 block is its last stage
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out.logits, out.baseline_logits)  # alpha = 0: exactly the backbone
        assert torch.equal(out.logits, model.forward_backbone(x))
        model.head.alpha.fill_(0.5)
        # and the head does reach it (relative: random eval-mode EfficientNet logits are ~1e-14)
        assert (model(x).logits - out.logits).abs().max() > 1e-3 * out.logits.abs().max()


@pytest.mark.parametrize("name", EXAMPLES)
def test_summary_counts_the_head_as_table_1_does(name):
    """gatta-train summary's count equals Table 1's convention worked out by hand from the taps:
    K and Q (c x d + d each) per layer, one alpha per layer, 8d for the two shared batch norms,
    a layer norm's scale and offset per map position or unit."""
    from gatta.training.cli import main

    out = CliRunner().invoke(main, ["summary", "--backbone", name, "--num-classes", "10", "--image-size", str(SIZE),
                                    "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    family = family_of(name)
    d = family.d
    shapes = [layer["shape"] for layer in summary["layers"]]
    expected = sum(2 * (s[0] * d + d) for s in shapes) + len(shapes) + 8 * d \
        + sum(2 * (s[1] * s[2] if len(s) == 3 else s[0]) for s in shapes)
    assert summary["d"] == d == 8 and summary["attention_params"] == expected
    assert [layer["name"] for layer in summary["layers"]] == ATTACHED[name]


def test_resnet_keeps_its_hand_built_stages_and_the_rule_agrees_with_them():
    """ResNet's stages stay as its checkpoints were written; the general rule, cutting the
    torchvision graph with fx, picks the same nodes and computes the same."""
    import torchvision

    from gatta.model import attach
    from gatta.model.families import resnet

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    trunk = resnet.FAMILY.trunk(net)
    gm = attach.trace(net, trunk)
    nodes = attach.pick_nodes(gm, trunk, resnet.FAMILY.stem)
    assert [n.target if n.op == "call_module" else n.name for n in nodes] == \
        ["relu", "layer1", "layer2", "layer3", "flatten", "fc"]
    model = build("resnet18")
    model.backbone.load_state_dict({k: v for k, v in model.backbone.state_dict().items()})
    hand = model.backbone.stages
    net.load_state_dict({"conv1.weight": hand[0][0].weight, **{f"bn1.{k}": v for k, v in hand[0][1].state_dict().items()},
                         **{f"layer1.{k}": v for k, v in hand[1][1].state_dict().items()},
                         **{f"layer2.{k}": v for k, v in hand[2].state_dict().items()},
                         **{f"layer3.{k}": v for k, v in hand[3].state_dict().items()},
                         **{f"layer4.{k}": v for k, v in hand[4][0].state_dict().items()},
                         **{f"fc.{k}": v for k, v in hand[5].state_dict().items()}})
    x = torch.rand(2, 3, SIZE, SIZE)
    h_fx, h_hand = x, x
    with torch.no_grad():
        for fx_stage, hand_stage in zip(attach.cut(gm, nodes), hand):
            h_fx, h_hand = fx_stage(h_fx), hand_stage(h_hand)
            assert torch.equal(h_fx, h_hand)


@pytest.mark.parametrize("name", ["efficientnet_b0", "timm:convnext_atto", "densenet121"])
def test_one_training_epoch_moves_only_the_head(tmp_path, name):
    from gatta.model.checkpoint import load_checkpoint
    from gatta.training.cli import main

    out = CliRunner().invoke(main, ["head", "--backbone", name, "--data", "synthetic:48:3", "--image-size", str(SIZE),
                                    "--epochs", "1", "--batch-size", "8", "--val-size", "12", "--num-workers", "0",
                                    "--out", str(tmp_path / "run")])
    assert out.exit_code == 0, out.output
    row = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert row["epoch"] == 1 and row["images_per_s"] > 0 and row["train_loss"] == row["train_loss"]
    trained, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    assert trained.config.d == 8 and trained.config.backbone == name
    assert trained.head.alpha.abs().min() > 0  # every layer's alpha moved off 0
    # the backbone is the one the run started from: rebuilt with the same seed, bit for bit
    torch.manual_seed(0)
    fresh = GattaNet(trained.config)
    assert all(torch.equal(a, b) for a, b in zip(fresh.backbone.state_dict().values(),
                                                 trained.backbone.state_dict().values()))


def test_an_unknown_backbone_is_one_line_listing_the_families():
    from gatta.training.cli import main

    out = CliRunner().invoke(main, ["summary", "--backbone", "resnet19"])
    assert out.exit_code != 0
    line = [l for l in out.output.splitlines() if "resnet19" in l]
    assert len(line) == 1 and "unknown backbone 'resnet19'" in line[0]
    for expected in ("resnet18", "efficientnet_b0", "convnext_tiny", "mobilenet_v3_small", "regnet_y_400mf",
                     "densenet121", "vgg16_bn", "timm:NAME", "toy"):
        assert expected in line[0]
    with pytest.raises(ValueError, match="unknown timm model 'resnet19'"):
        build("timm:resnet19")


def test_a_state_dict_that_does_not_fit_names_its_first_missing_and_unexpected_keys(tmp_path):
    import torchvision

    state = torchvision.models.efficientnet_b0(weights=None, num_classes=10).state_dict()
    good = tmp_path / "good.pth"
    torch.save(state, good)
    model = GattaNet(GattaConfig(backbone="efficientnet_b0", num_classes=10, image_size=SIZE, d=8),
                     backbone_weights=good)
    x = torch.rand(1, 3, SIZE, SIZE)
    reference = torchvision.models.efficientnet_b0(weights=None, num_classes=10).eval()
    reference.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(model.eval().forward_backbone(x), reference((x - model.mean) / model.std))
    bad = dict(state)
    bad["features.9.weight"] = bad.pop("features.1.0.block.0.0.weight")
    torch.save({"state_dict": bad}, tmp_path / "bad.pth")  # a wrapped state dict is unwrapped first
    with pytest.raises(ValueError) as err:
        GattaNet(GattaConfig(backbone="efficientnet_b0", num_classes=10, image_size=SIZE, d=8),
                 backbone_weights=tmp_path / "bad.pth")
    assert str(err.value).endswith("bad.pth: not a torchvision efficientnet_b0 state dict (1 missing, first "
                                   "features.1.0.block.0.0.weight; 1 unexpected, first features.9.weight)")
    torch.save(torchvision.models.efficientnet_b0(weights=None).state_dict(), tmp_path / "imagenet.pth")
    with pytest.raises(ValueError, match=r"its classifier \(classifier.1\) has 1000 classes, the model 10"):
        GattaNet(GattaConfig(backbone="efficientnet_b0", num_classes=10, image_size=SIZE, d=8),
                 backbone_weights=tmp_path / "imagenet.pth")


def test_preprocessing_follows_the_published_weights():
    """A pretrained member is evaluated as its weights were (torchvision's DEFAULT transform,
    timm's pretrained_cfg), read from their tables, nothing downloaded."""
    eff = family_of("efficientnet_b0").preprocessing("efficientnet_b0")
    assert (eff.input_size, eff.crop_pct, eff.interpolation) == (224, 0.875, "bicubic")
    r18 = family_of("resnet18").preprocessing("resnet18")
    assert (r18.input_size, r18.crop_pct, r18.interpolation) == (224, 0.875, "bilinear")
    convnext = family_of("convnext_tiny").preprocessing("convnext_tiny")
    assert (convnext.input_size, convnext.crop_pct) == (224, round(224 / 236, 4))
    small = family_of("efficientnet_b0").preprocessing("efficientnet_b0", image_size=64, crop_pct=1.0)
    assert (small.input_size, small.crop_pct) == (64, 1.0)
    timm_eff = family_of("timm:efficientnet_b0").preprocessing("timm:efficientnet_b0")
    assert timm_eff.input_size == 224 and timm_eff.interpolation == "bicubic"
