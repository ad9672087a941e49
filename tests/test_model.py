"""The model against the paper's equations, parameter counts and exactness properties."""

import pytest
import torch

from gatta.model.config import GattaConfig
from gatta.model.network import GattaNet


def tiny_model(**kw) -> GattaNet:
    torch.manual_seed(0)
    cfg = dict(backbone="toy", num_classes=10, d=4, image_size=8, alpha_init=0.7)
    cfg.update(kw)
    model = GattaNet(GattaConfig(**cfg)).eval()
    with torch.no_grad():  # non-trivial biases so every term of eqs. 1-4 matters
        for lin in (*model.head.keys, *model.head.queries):
            lin.bias.normal_()
    return model


def naive_gatta(model: GattaNet, acts):
    """Eqs. 1-4 as written, with explicit loops over positions, units and dimensions."""
    B = acts[0].shape[0]
    d = model.config.d
    per_layer_q = []
    keys = []
    for i, (x, tap) in enumerate(zip(acts, model.taps)):
        K, bk = model.head.keys[i].weight.t(), model.head.keys[i].bias  # c x d, d
        Q, bq = model.head.queries[i].weight.t(), model.head.queries[i].bias
        if tap.kind == "conv":
            _, C, H, W = x.shape
            k = torch.zeros(B, H, W, d)
            qsum = torch.zeros(B, d)
            for b in range(B):
                for y in range(H):
                    for xx in range(W):
                        for m in range(d):
                            k[b, y, xx, m] = sum(x[b, c, y, xx] * K[c, m] for c in range(C)) + bk[m]
                            qsum[b, m] += sum(x[b, c, y, xx] * Q[c, m] for c in range(C)) + bq[m]
            per_layer_q.append(qsum / (H * W))
        else:
            _, C = x.shape
            k = torch.zeros(B, C, d)
            qsum = torch.zeros(B, d)
            for b in range(B):
                for c in range(C):
                    for m in range(d):
                        k[b, c, m] = x[b, c] * K[c, m] + bk[m]
                        qsum[b, m] += x[b, c] * Q[c, m] + bq[m]
            per_layer_q.append(qsum / C)
        keys.append(k)
    q_avg = sum(per_layer_q) / len(per_layer_q)
    gattas = [(k * q_avg.view(B, *([1] * (k.dim() - 2)), d)).sum(-1) for k in keys]
    return q_avg, gattas


def pass1_acts(model, image):
    h = model.normalize(image)
    acts = []
    for stage in model.backbone.stages:
        h = stage(h)
        acts.append(h)
    return acts


@pytest.mark.parametrize("path", ["folded", "maps"])
def test_head_matches_naive_equations(path):
    model = tiny_model()
    image = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        acts = pass1_acts(model, image)
        q_ref, g_ref = naive_gatta(model, acts)
        model.head.materialize = path == "maps"  # the training path (dropout off in eval)
        q_avg = model.head.global_query(acts)
        gattas = model.head.agreement(acts, q_avg)
    torch.testing.assert_close(q_avg, q_ref, atol=1e-5, rtol=1e-5)
    assert [tuple(g.shape) for g in gattas] == [(2, 8, 8), (2, 4, 4), (2, 2, 2), (2, 256), (2, 10)]
    for g, r in zip(gattas, g_ref):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_second_pass_modulates_each_layer_by_eq5():
    model = tiny_model(num_classes=3)
    image = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        out = model(image, return_maps=True)
        acts = pass1_acts(model, image)
        _, g_ref = naive_gatta(model, acts)
        alpha = model.head.alpha
        h = acts[0] * (1 + alpha[0] * g_ref[0].unsqueeze(1))
        for i, stage in enumerate(model.backbone.stages[1:], start=1):
            h = stage(h)
            g = g_ref[i].unsqueeze(1) if h.dim() == 4 else g_ref[i]
            h = h * (1 + alpha[i] * g)
    torch.testing.assert_close(out.logits, h, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.baseline_logits, model.forward_backbone(image))


def test_alpha_zero_and_zero_mask_reproduce_baseline_exactly():
    image = torch.rand(3, 3, 8, 8)
    model = tiny_model()
    with torch.no_grad():
        base = model.forward_backbone(image)
        lesioned = model(image, lesion_mask=torch.zeros(5)).logits
        full = model(image).logits
        model.head.alpha.zero_()
        alpha0 = model(image).logits
    assert torch.equal(lesioned, base)
    assert torch.equal(alpha0, base)
    assert (full - base).abs().max() > 1e-3  # attention does change the output


def test_per_image_lesion_masks_match_single_runs():
    model = tiny_model()
    image = torch.rand(3, 3, 8, 8)
    masks = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 1], [0, 0, 0, 0, 1.0]])
    with torch.no_grad():
        batched = model(image, lesion_mask=masks).logits
        single = torch.cat([model(image[i : i + 1], lesion_mask=masks[i]).logits for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    assert (batched[0] - batched[1]).abs().max() > 0


@pytest.mark.parametrize(
    "classes,d,backbone_params,attention_params",
    [(10, 16, 620_362, 15_845), (100, 16, 643_492, 18_725), (100, 32, 643_492, 37_445), (100, 64, 643_492, 74_885)],
)
def test_toy_parameter_counts_match_table_1(classes, d, backbone_params, attention_params):
    counts = GattaNet(GattaConfig(num_classes=classes, d=d)).parameter_counts()
    assert counts == {"backbone_params": backbone_params, "attention_params": attention_params,
                      "attention_trainable": attention_params}


# Table 1's ResNet rows (ImageNet-1k, 224 x 224): attention parameters in thousands, rounded
# to 0.1K as the paper prints them.
TABLE1_RESNET = [("resnet18", 8, 68.9), ("resnet18", 16, 101.4), ("resnet18", 32, 166.5),
                 ("resnet50", 4, 78.7), ("resnet50", 8, 118.0), ("resnet50", 16, 196.7),
                 ("resnet50", 32, 353.9), ("resnet50", 64, 668.4)]


@pytest.fixture(scope="module")
def resnet_heads():
    """Head counts per (backbone, d), with the paper's ResNet recipe (batch norm on keys and
    queries, layer norm on gatta); one backbone build per architecture."""
    counts = {}
    for arch in ("resnet18", "resnet50"):
        for d in sorted(d for a, d, _ in TABLE1_RESNET if a == arch):
            model = GattaNet(GattaConfig(backbone=arch, num_classes=1000, d=d, image_size=224,
                                         qk_batchnorm=True, gatta_layernorm=True))
            counts[arch, d] = model.parameter_counts()
    return counts


@pytest.mark.parametrize("arch,d,thousands", TABLE1_RESNET)
def test_resnet_parameter_counts_match_table_1(resnet_heads, arch, d, thousands):
    counts = resnet_heads[arch, d]
    assert round(counts["attention_params"] / 1000, 1) == thousands
    # what the optimiser trains: the 4d running statistics are not parameters
    assert counts["attention_trainable"] == counts["attention_params"] - 4 * d
    assert counts["backbone_params"] == {"resnet18": 11_689_512, "resnet50": 25_557_032}[arch]


def test_wider_toy_control_matches_toy_plus_head_parameters():
    wide = GattaNet(GattaConfig(backbone="toy-wide", d=16)).parameter_counts()["backbone_params"]
    assert wide == 636_462  # vs 620,362 + 15,845 = 636,207: matched within 0.05%
    assert abs(wide - (620_362 + 15_845)) / wide < 5e-4


def test_resnet18_head_is_sized_from_reported_channels():
    """The paper's ResNet taps: stem (before the max-pool), layer1-3, avgpool, logits."""
    model = GattaNet(GattaConfig(backbone="resnet18", num_classes=7, d=8, image_size=64,
                                 qk_batchnorm=True, gatta_layernorm=True))
    assert [(t.name, t.kind, t.shape) for t in model.taps] == [
        ("stem", "conv", (64, 32, 32)), ("layer1", "conv", (64, 16, 16)),
        ("layer2", "conv", (128, 8, 8)), ("layer3", "conv", (256, 4, 4)),
        ("avgpool", "dense", (512,)), ("logits", "dense", (7,)),
    ]
    channels = 64 + 64 + 128 + 256 + 512 + 7
    layernorm = 2 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 512 + 7)
    counts = model.parameter_counts()
    assert counts["attention_trainable"] == 2 * channels * 8 + 6 * 2 * 8 + 4 * 8 + layernorm + 6
    assert counts["attention_params"] == counts["attention_trainable"] + 4 * 8
    assert counts["backbone_params"] == 11_180_103


def _randomise_norms(model: GattaNet) -> None:
    """Running statistics and affine terms away from their identity initialisation."""
    head = model.head
    with torch.no_grad():
        for bn in (head.key_norm, head.query_norm):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.3)
        for ln in head.gatta_norms:
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.normal_(0, 0.3)


def test_batchnorm_head_folds_exactly_in_eval():
    """ResNet options: eval-mode batch norm on keys/queries is folded into the projections."""
    model = tiny_model(qk_batchnorm=True, gatta_layernorm=True)
    _randomise_norms(model)
    image = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        folded = model(image, return_maps=True)
        model.head.materialize = True  # map path with eval-mode norms: must agree
        maps = model(image, return_maps=True)
    torch.testing.assert_close(folded.logits, maps.logits, atol=1e-4, rtol=1e-4)
    for name in folded.gatta:
        torch.testing.assert_close(folded.gatta[name], maps.gatta[name], atol=1e-4, rtol=1e-4)


def test_batchnorm_is_shared_by_all_layers_in_training():
    """In training, one set of batch statistics over every key of every layer: the normalised
    keys of all layers together have mean 0 and variance 1 per feature."""
    model = tiny_model(qk_batchnorm=True, qk_dropout=0.0).train()
    acts = pass1_acts(model, torch.rand(3, 3, 8, 8))
    head = model.head
    keys = head._project_all(acts, head.keys, head.key_norm)
    joined = torch.cat(keys, 1).reshape(-1, model.config.d)
    torch.testing.assert_close(joined.mean(0), torch.zeros(model.config.d), atol=1e-5, rtol=0)
    torch.testing.assert_close(joined.var(0, unbiased=False), torch.ones(model.config.d), atol=1e-3, rtol=0)
    assert not torch.allclose(keys[0].reshape(-1, model.config.d).mean(0), torch.zeros(model.config.d), atol=1e-2)


def test_resnet_answers_do_not_depend_on_the_rest_of_the_batch():
    """Eval mode: running statistics and a static layer norm, so an image's answer is the same
    alone or beside others; and the untrained head (alpha = 0) is exactly its backbone."""
    torch.manual_seed(0)
    model = GattaNet(GattaConfig(backbone="resnet18", num_classes=5, d=8, image_size=32,
                                 qk_batchnorm=True, gatta_layernorm=True, alpha_init=0.3)).eval()
    _randomise_norms(model)
    image = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        batched = model(image, return_maps=True)
        single = [model(image[i:i + 1], return_maps=True) for i in range(4)]
        torch.testing.assert_close(batched.logits, torch.cat([s.logits for s in single]), atol=1e-5, rtol=1e-5)
        # batched and single-image convolutions round differently (oneDNN picks kernels by
        # batch): on an AVX-512 machine the avgpool tap's 512 agreement values (up to 7.3 in
        # magnitude) differed by up to 1.9e-5, float32 rounding of the sums behind them; a
        # batch leak (training-mode statistics) moves whole maps by orders more
        for name in batched.gatta:
            torch.testing.assert_close(batched.gatta[name], torch.cat([s.gatta[name] for s in single]),
                                       atol=1e-4, rtol=1e-4)
        assert (batched.logits - batched.baseline_logits).abs().max() > 1e-3
        model.head.alpha.zero_()
        out = model(image)
    assert torch.equal(out.logits, model.forward_backbone(image))


def naive_iterations(model: GattaNet, image, steps: int):
    """T attention steps as the paper describes them: every step is a full forward from the
    image, each attached layer modulated by the gatta computed from the previous forward's
    activations (the previous step's modulated ones), so no modulation compounds."""
    acts = pass1_acts(model, image)
    alpha = model.head.alpha
    for _ in range(steps):
        _, g_ref = naive_gatta(model, acts)
        h = model.normalize(image)
        new_acts = []
        for i, stage in enumerate(model.backbone.stages):
            h = stage(h)
            g = g_ref[i].unsqueeze(1) if h.dim() == 4 else g_ref[i]
            h = h * (1 + alpha[i] * g)
            new_acts.append(h)
        acts = new_acts
    return h, g_ref


@pytest.mark.parametrize("steps", [2, 3])
def test_iterations_match_a_step_by_step_reference(steps):
    model = tiny_model(num_classes=3, iterations=steps, d=3)
    image = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        out = model(image, return_maps=True)
        ref_logits, ref_gattas = naive_iterations(model, image, steps)
        one_step = naive_iterations(model, image, 1)[0]
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-4, rtol=1e-4)
    for got, ref in zip(out.gatta.values(), ref_gattas):
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    assert (ref_logits - one_step).abs().max() > 1e-3  # the extra steps do change the result


def test_more_iterations_change_the_result_and_keep_shapes():
    one = tiny_model()
    two = tiny_model(iterations=2)
    two.load_state_dict(one.state_dict())
    image = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        a, b = one(image, return_maps=True), two(image, return_maps=True)
    assert a.logits.shape == b.logits.shape and a.q_avg.shape == b.q_avg.shape == (2, 4)
    assert (a.logits - b.logits).abs().max() > 1e-4


def test_query_bias_shifts_q_avg():
    model = tiny_model()
    image = torch.rand(2, 3, 8, 8)
    bias = torch.randn(2, 4)
    with torch.no_grad():
        plain = model(image, return_maps=True)
        biased = model(image, query_bias=bias, return_maps=True)
    torch.testing.assert_close(biased.q_avg, plain.q_avg + bias)


def test_fast_dropout_keeps_three_quarters_and_rescales():
    from gatta.model.head import fast_dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = fast_dropout(x, 0.25, training=True)
    kept = (y > 0).float().mean().item()
    assert abs(kept - 0.75) < 0.005 and torch.allclose(y[y > 0], torch.tensor(4 / 3))
    assert torch.equal(fast_dropout(x, 0.25, training=False), x)


def test_channels_last_gives_the_same_outputs():
    model = tiny_model()
    image = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        ref = model(image, return_maps=True)
        model.to(memory_format=torch.channels_last)
        got = model(image.contiguous(memory_format=torch.channels_last), return_maps=True)
        model.head.materialize = True
        maps = model(image.contiguous(memory_format=torch.channels_last), return_maps=True)
    for out in (got, maps):
        torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
        for k in ref.gatta:
            torch.testing.assert_close(out.gatta[k], ref.gatta[k], atol=1e-5, rtol=1e-5)


def test_resnet_weights_load_from_a_local_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None, num_classes=5)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    model = GattaNet(GattaConfig(backbone="resnet18", num_classes=5, d=4, image_size=32),
                     backbone_weights=tmp_path / "r18.pth").eval()
    reference.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x), reference(x))
    torch.save({"not": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="wrong.pth: not a torchvision resnet18 state dict"):
        GattaNet(GattaConfig(backbone="resnet18", num_classes=5, d=4, image_size=32), backbone_weights=tmp_path / "wrong.pth")


@pytest.mark.parametrize("content,message", [
    ("classes", r"its classifier \(fc\) has 1000 classes, the model 5"),
    ("junk", "cannot read a state dict .not a file written by torch.save"),
])
def test_resnet_weights_refused_in_one_line(tmp_path, content, message):
    import torchvision

    path = tmp_path / "w.pth"
    if content == "classes":
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    else:
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=message):
        GattaNet(GattaConfig(backbone="resnet18", num_classes=5, d=4, image_size=32), backbone_weights=path)


def test_toy_head_alpha_sign_is_a_symmetry_not_a_finding():
    """Without batch/layer norm, flipping layer i's key projection and alpha_i together leaves
    every logit unchanged (k_i -> -k_i flips gatta_i, alpha_i -> -alpha_i flips it back): the
    sign of a learned alpha means nothing alone (docs/results.md, "Run-to-run spread")."""
    from helpers import make_model

    model = make_model(alpha=0.5)
    with torch.no_grad():
        model.head.alpha.copy_(torch.linspace(-0.6, 0.7, len(model.head.alpha)))
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        before = model(x).logits
        for i in (0, 2):
            model.head.keys[i].weight.neg_()
            model.head.keys[i].bias.neg_()
            model.head.alpha[i].neg_()
        after = model(x).logits
        model.head.alpha[1].neg_()  # alpha alone flipped: a different model
        changed = model(x).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert (changed - before).abs().max() > 1e-4  # 7e-4 here: 70x the symmetric pair's tolerance


def test_with_gatta_layer_norm_the_sign_moves_to_the_norm_scale():
    """The ResNet recipe layer-normalises gatta before alpha: there flipping the layer norm's
    scale and offset with alpha_i is the symmetry (flipping K_i alone no longer is)."""
    from helpers import make_model

    model = make_model(alpha=0.5, gatta_layernorm=True)
    with torch.no_grad():
        for norm in model.head.gatta_norms:  # non-trivial affine maps, as after training
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        before = model(x).logits
        model.head.gatta_norms[1].weight.neg_()
        model.head.gatta_norms[1].bias.neg_()
        model.head.alpha[1].neg_()
        after = model(x).logits
        model.head.keys[1].weight.neg_()
        model.head.keys[1].bias.neg_()
        model.head.alpha[1].neg_()  # the toy head's flip, here a different network
        changed = model(x).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert (changed - before).abs().max() > 1e-4
