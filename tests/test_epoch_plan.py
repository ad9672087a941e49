"""In-memory training follows sampling.epoch_plan: one rank sees the order and augmentation it
always saw, and DDP ranks take the same number of steps (unequal steps hang the ranks)."""

import json
import os
import subprocess
import sys
import textwrap

import psutil
import torch

from gatta.training.augment import augment
from gatta.training.data import synthetic_images
from gatta.training.dataset import ImageSet
from gatta.training.train import FitOptions, _epoch_batches


def _epoch(data, n, batch_size, rank=0, world=1, augmentation="none", epoch=3):
    opts = FitOptions(stage="head", out_dir=".", batch_size=batch_size, seed=7, augmentation=augmentation)
    out, steps = _epoch_batches(data, torch.arange(n), torch.Generator(), epoch, opts, rank, world)
    out = list(out)
    assert len(out) == steps
    return out


def test_one_rank_sees_what_it_always_saw_and_ranks_take_equal_steps():
    data = synthetic_images(37, 4, 8)
    # one rank: the order and the augmented pixels of the loop before epoch_plan
    g = torch.Generator().manual_seed(7 * 100003 + 3)
    order = torch.randperm(37, generator=g)
    before = [(augment(data.images[idx].float().div_(255), g), data.labels[idx]) for idx in order.split(8)]
    now = _epoch(data, 37, 8, augmentation="shift-rotate-flip")
    assert len(now) == len(before) == 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(now, before))
    # ranks: labels name the pictures; 9 on 2 ranks at batch 4 was 2 steps on rank 0, 1 on rank 1
    for n, world, batch in [(9, 2, 4), (17, 2, 8), (37, 3, 4), (13, 4, 3)]:
        named = ImageSet(torch.zeros(n, 3, 2, 2, dtype=torch.uint8), torch.arange(n), ["x"])
        per_rank = [_epoch(named, n, batch, r, world) for r in range(world)]
        assert len({len(p) for p in per_rank}) == 1, (n, world, batch)
        assert sorted(y for p in per_rank for _, ys in p for y in ys.tolist()) == list(range(n))


DDP_SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    from gatta.model.config import GattaConfig
    from gatta.training.data import synthetic_images
    from gatta.model.network import GattaNet
    from gatta.training.train import FitOptions, dist_info, fit

    out = sys.argv[1]
    rank, world = dist_info()
    torch.manual_seed(0)
    model = GattaNet(GattaConfig(num_classes=3, d=4, image_size=16, alpha_init=0.1, qk_dropout=0.0))
    data = synthetic_images(12, 3, 16)
    fit(model, data, torch.arange(9), torch.arange(9, 12),
        FitOptions(stage="head", out_dir=out, epochs=2, batch_size=4, lr=1e-2, progress=False, precision="fp32"))
    torch.save(model.head.state_dict(), os.path.join(out, f"head-{rank}.pt"))
''')


def test_ddp_in_memory_with_a_short_last_step_does_not_hang(tmp_path):
    """torchrun, 2 gloo ranks, 9 in-memory training images at batch 4: the split before
    epoch_plan gave rank 0 two steps and rank 1 one, and the ranks waited on each other."""
    script = tmp_path / "ddp_memory.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(script), str(tmp_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            p.kill()  # the ranks first: torchrun starts each in its own session
        proc.communicate()
        raise AssertionError("the ranks hung (no exit in 180 s): unequal step counts") from None
    assert proc.returncode == 0, output[-3000:]
    heads = [torch.load(tmp_path / f"head-{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    assert [json.loads(line)["epoch"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]
