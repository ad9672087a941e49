"""CUDA paths (skipped on machines without a GPU)."""

import pytest
import torch
import torch.nn.functional as F

from gatta.training.train import trainable_parameters

from helpers import make_model

pytestmark = pytest.mark.requires_cuda


def test_cuda_forward_matches_cpu():
    model = make_model(alpha=0.5)
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        cpu = model(x, return_maps=True)
        gpu = model.cuda()(x.cuda(), return_maps=True)
    torch.testing.assert_close(gpu.logits.cpu(), cpu.logits, atol=1e-4, rtol=1e-4)
    for name in cpu.gatta:
        torch.testing.assert_close(gpu.gatta[name].cpu(), cpu.gatta[name], atol=1e-4, rtol=1e-4)


def test_cuda_head_step_changes_only_the_head():
    model = make_model(alpha=0.0).cuda()
    params = trainable_parameters(model, "head")
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.train()
    F.cross_entropy(model(torch.rand(8, 3, 16, 16, device="cuda")).logits,
                    torch.arange(8, device="cuda") % 4).backward()
    torch.optim.Adam(params).step()
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in before.items())
    assert model.head.alpha.abs().sum() > 0


def test_cuda_is_the_auto_device_and_trains_with_pinned_images(tmp_path):
    import json

    from gatta.training.data import synthetic_images
    from gatta.training.train import FitOptions, fit, resolve_device

    assert resolve_device("auto") == "cuda"
    data = synthetic_images(96, 4, 16, seed=0)
    for precision in ("fp32", "bf16"):
        model = make_model(alpha=0.0)
        fit(model, data, torch.arange(64), torch.arange(64, 96),
            FitOptions(stage="head", out_dir=tmp_path / precision, epochs=2, batch_size=32, lr=1e-2,
                       device="cuda", precision=precision, progress=False))
        rows = [json.loads(l) for l in open(tmp_path / precision / "log.jsonl")]
        assert [r["device"] for r in rows] == ["cuda", "cuda"]
        assert rows[-1]["train_loss"] < rows[0]["train_loss"] + 0.05


def test_cuda_fp32_is_ieee_fp32_not_tf32():
    """resolve_device turns TF32 off for convolutions (on by default in PyTorch) and matmuls.
    Inputs of 1/3 make TF32's input rounding systematic: 256 products are off by ~5e-4
    relative under TF32, by at most 256 * 2**-24 ~ 1.5e-5 in IEEE fp32."""
    from gatta.training.train import resolve_device

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        resolve_device("cuda")
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        a = torch.full((256, 256), 1 / 3, device="cuda")
        ref = a.double() @ a.double()
        torch.testing.assert_close((a @ a).double(), ref, rtol=1e-4, atol=0)
        x = torch.full((2, 256, 4, 4), 1 / 3, device="cuda")
        w = torch.full((8, 256, 1, 1), 1 / 3, device="cuda")
        torch.testing.assert_close(F.conv2d(x, w).double(), F.conv2d(x.double(), w.double()), rtol=1e-4, atol=0)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
