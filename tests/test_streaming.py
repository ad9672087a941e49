"""Data that streams: the layouts (ImageFolder, Tiny-ImageNet, ImageNet, a .tar of either)
listed once, one file decoded per item by DataLoader workers, a seeded split across ranks that
sees every picture once per epoch, resumable, and the DDP path on 2 CPU ranks."""

import json
import os
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import psutil
import pytest
import torch

from gatta.decoder import Preprocessing, decode_image
from gatta.training import streaming
from gatta.training.data import load_images
from gatta.training.layouts import LayoutError, list_dataset
from gatta.training.sampling import ShardedBatches, epoch_plan
from gatta.training.streaming import choose_mode, stream_dataset

from helpers import WNIDS, jpeg_bytes, tar_tree, tiny_imagenet, write_file


def test_tiny_imagenet_listing_from_the_tree_and_from_a_tar(tmp_path):
    tree = tiny_imagenet(tmp_path / "tiny-imagenet-200")
    train, val = list_dataset(tree, "train"), list_dataset(tree, "val")
    assert train.class_ids == val.class_ids == sorted(WNIDS)
    # readable names from words.txt, ids kept; two "crane"s keep their ids
    assert train.class_names == ["goldfish", "crane (n02000001)", "crane (n03000001)"]
    assert len(train) == 12 and train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert all(f.startswith(f"train/{sorted(WNIDS)[l]}/images/") for f, l in zip(train.files, train.labels.tolist()))
    by_file = dict(zip(val.files, val.labels.tolist()))
    assert len(val) == 6 and by_file["val/images/val_0.JPEG"] == sorted(WNIDS).index(WNIDS[0])
    assert by_file["val/images/val_4.JPEG"] == sorted(WNIDS).index(WNIDS[1])

    packed = tar_tree(tree, tmp_path / "tiny.tar", "tiny-imagenet-200")
    for split, listing in (("train", train), ("val", val)):
        from_tar = list_dataset(packed, split)
        assert [f.removeprefix("tiny-imagenet-200/") for f in from_tar.files] == listing.files
        assert torch.equal(from_tar.labels, listing.labels) and from_tar.class_names == listing.class_names
        assert all(from_tar.read(i) == listing.read(i) for i in range(len(listing)))


def test_imagefolder_and_imagenet_layouts(tmp_path):
    for c in ("dog", "cat"):
        for n in range(3):
            write_file(tmp_path / "photos" / "all" / c / f"{n}.jpg", jpeg_bytes(n))
    folder = list_dataset(tmp_path / "photos")  # a leading folder every picture shares is not a class
    assert folder.class_ids == folder.class_names == ["cat", "dog"] and len(folder) == 6
    with pytest.raises(LayoutError, match="photos: no test split in it"):
        list_dataset(tmp_path / "photos", "val")
    # ImageNet (Kaggle's layout): train/<wnid>/*.JPEG, flat val/ labelled by LOC_val_solution.csv
    net = tmp_path / "imagenet"
    for wnid in WNIDS:
        write_file(net / "ILSVRC/Data/CLS-LOC/train" / wnid / f"{wnid}_1.JPEG", jpeg_bytes(1))
    write_file(net / "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG", jpeg_bytes(2))
    write_file(net / "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000002.JPEG", jpeg_bytes(3))
    write_file(net / "LOC_val_solution.csv", "ImageId,PredictionString\nILSVRC2012_val_00000001,n02000001 1 2 3 4 \n"
                                         "ILSVRC2012_val_00000002,n01000001 1 2 3 4 n01000001 5 6 7 8\n")
    write_file(net / "LOC_synset_mapping.txt", "n01000001 goldfish, Carassius auratus\nn02000001 crane\nn03000001 derrick\n")
    val = list_dataset(net, "val")
    assert val.labels.tolist() == [0, 1] and val.class_names == ["goldfish", "crane", "derrick"]
    assert val.files[0].endswith("val_00000002.JPEG")
    (net / "LOC_val_solution.csv").unlink()
    with pytest.raises(LayoutError, match="is in no class folder and .* has no annotations file"):
        list_dataset(net, "val")


def test_every_picture_once_per_epoch_across_ranks_in_equal_steps():
    indices = torch.arange(100, 137)  # 37 pictures
    for world, batch in [(1, 8), (2, 4), (3, 5), (4, 9), (2, 18)]:
        plans = [epoch_plan(indices, 3, seed=7, batch_size=batch, rank=r, world=world) for r in range(world)]
        assert len({len(p) for p in plans}) == 1  # DDP: every rank takes the same number of steps
        seen = torch.cat([b for p in plans for b in p])
        assert sorted(seen.tolist()) == indices.tolist()
        assert all(len(b) >= 1 for p in plans for b in p)
    # world 1: the in-memory path's order, in batches
    g = torch.Generator().manual_seed(7 * 100003 + 3)
    assert torch.equal(torch.cat(epoch_plan(indices, 3, 7, 8)), indices[torch.randperm(37, generator=g)])
    sampler = ShardedBatches(indices, 4, rank=1, world=2, seed=7)
    sampler.set_epoch(1)
    first, again = list(sampler), list(sampler)
    sampler.set_epoch(2)
    assert first == again and list(sampler) != first and len(sampler) == len(first) == 5


def test_streamed_batches_decode_augment_and_do_not_depend_on_the_worker_count(tmp_path):
    tree = tiny_imagenet(tmp_path / "tiny")
    prep = Preprocessing(16, "crop", 0.875)
    data = stream_dataset(tree, prep, workers=0)
    idx = torch.arange(len(data))
    evaluated = torch.cat([x for x, _ in data.eval_batches(idx, 5)])
    expected = np.stack([decode_image(data.listing.read(i), prep) for i in range(len(data))]).astype(np.float32) / 255
    assert evaluated.shape == (12, 3, 16, 16) and np.array_equal(evaluated.numpy(), expected)

    def epoch(workers, number):
        data.workers = workers
        batches, steps = data.train_batches(idx, number, seed=1, batch_size=4)
        out = list(batches)
        assert len(out) == steps == 3
        return torch.cat([x for x, _ in out]), torch.cat([y for _, y in out])

    (x0, y0), (x2, y2), (x_next, _) = epoch(0, 1), epoch(2, 1), epoch(2, 2)
    assert torch.equal(x0, x2) and torch.equal(y0, y2)  # seeded per picture, not per worker
    assert not torch.equal(x0, x_next)  # a new epoch draws new crops
    assert sorted(y0.tolist()) == sorted(data.labels.tolist())
    assert not torch.equal(x0, evaluated[torch.cat(epoch_plan(idx, 1, 1, 4))])  # augmented, not the eval view


def test_data_mode_by_size_or_flag_and_memory_mode_reads_the_same_layouts(tmp_path, monkeypatch):
    tree = tiny_imagenet(tmp_path / "tiny")
    assert choose_mode(tree, 16)[0] == "memory" and len(choose_mode(tree, 16)[1]) == 12
    monkeypatch.setattr(streaming, "MEMORY_LIMIT_BYTES", 12 * 3 * 16 * 16 - 1)
    assert choose_mode(tree, 16)[0] == "stream" and choose_mode(tree, 16, "memory") == ("memory", None)
    with tarfile.open(tmp_path / "t.tar.gz", "w:gz") as tar:
        tar.add(tree, arcname="tiny")
    assert choose_mode(tmp_path / "t.tar.gz", 16) == ("memory", None)
    with pytest.raises(LayoutError, match="--data-mode memory for CIFAR pickles and .tar.gz"):
        choose_mode(tmp_path / "t.tar.gz", 16, "stream")
    prep = Preprocessing(16, "crop", 0.875)
    for split, folder in (("train", "train"), ("test", "val")):
        memory = load_images(tree, prep, split=split)
        streamed = stream_dataset(tree, prep, split=folder, workers=0)
        assert memory.class_names == streamed.class_names and torch.equal(memory.labels, streamed.labels)
        x = torch.cat([x for x, _ in streamed.eval_batches(torch.arange(len(streamed)), 8)])
        assert torch.equal(memory.images, (x * 255).round().to(torch.uint8))


def test_auto_mode_lists_the_set_once(tmp_path, monkeypatch):
    """choose_mode's listing is handed on: streamed or decoded, the set is listed once."""
    from gatta.training import layouts
    from gatta.training.data import load_dataset

    tree = tiny_imagenet(tmp_path / "tiny")
    scans, scan = [], layouts._scan
    monkeypatch.setattr(layouts, "_scan", lambda source: scans.append(source) or scan(source))
    monkeypatch.setenv("GATTA_CACHE", str(tmp_path / "cache"))  # decoded here, not read from a cache
    assert load_dataset(str(tree), 16).held and len(scans) == 1
    monkeypatch.setattr(streaming, "MEMORY_LIMIT_BYTES", 0)
    test_set = load_dataset(str(tree), 16, split="test")
    assert not test_set.held and len(test_set) == 6 and len(scans) == 2


def test_auto_streams_random_crop_training_and_memory_keeps_the_recipes_augmentation(tmp_path, capsys):
    """A random-resized-crop run streams when it can (to crop the stored picture); held in
    memory it keeps its augmentation, and nothing is said: the recipe chose it, not the path."""
    from dataclasses import replace

    from gatta.model.config import imagenet_preprocessing
    from gatta.training.runs import RunOptions, augmentation_of, training_data

    tree = tiny_imagenet(tmp_path / "tiny")
    assert choose_mode(tree, 16)[0] == "memory" and choose_mode(tree, 16, random_crop=True) == ("stream", None)
    prep, run = imagenet_preprocessing(16), RunOptions(data=str(tree), out=tmp_path / "run", num_workers=0)
    assert not training_data(run, prep, "resnet18").held
    assert training_data(run, 16, "toy").held  # shift-rotate-flip: by size, here in memory
    assert training_data(replace(run, augmentation="none"), prep, "resnet18").held
    assert training_data(replace(run, data_mode="memory"), prep, "resnet18").held
    assert [augmentation_of(run, b) for b in ("toy", "resnet18")] == ["shift-rotate-flip", "random-resized-crop"]
    assert augmentation_of(replace(run, augmentation="shift-rotate-flip"), "resnet18") == "shift-rotate-flip"
    assert capsys.readouterr().out == ""


def test_the_decoded_sizes_quoted_are_the_arithmetic():
    """docs/data.md and streaming.py quote a set's decoded size (N x 3 x S x S bytes) to the
    precision they print."""
    import re
    from pathlib import Path

    sizes = {"CIFAR-10": 50_000 * 3 * 32 * 32, "Tiny-ImageNet": 100_000 * 3 * 64 * 64,
             "ImageNet-1k": 1_281_167 * 3 * 224 * 224}
    root = Path(__file__).resolve().parents[1]
    for path in (root / "docs" / "data.md", root / "training" / "streaming.py"):
        text = " ".join(path.read_text().split())
        for name, size in sizes.items():
            quoted = re.findall(rf"(?<![\w-]){name}[^()]*\(([\d.]+) GB\)", text)
            assert quoted, (path.name, name)
            for q in quoted:  # 0.15 is 0.1536 to two places, 193 is 192.85 to none
                assert abs(float(q) - size / 1e9) <= 0.5 * 10 ** -len(q.partition(".")[2]), (path.name, name, q)
    assert streaming.MEMORY_LIMIT_BYTES == 4 * 2**30  # "4 GiB (4.3 GB)"


def _toy_model(seed=0):
    from gatta.model.config import GattaConfig
    from gatta.model.network import GattaNet

    torch.manual_seed(seed)
    return GattaNet(GattaConfig(num_classes=3, d=4, image_size=16, alpha_init=0.1))


def test_fit_on_streamed_data_resumes_at_an_epoch_boundary(tmp_path):
    from gatta.training.train import FitOptions, fit

    tree = tiny_imagenet(tmp_path / "tiny", per_class=8)
    data = stream_dataset(tree, Preprocessing(16), workers=2)
    train_idx, val_idx = torch.tensor([i for i in range(24) if i % 4]), torch.arange(0, 24, 4)
    opts = dict(stage="head", batch_size=4, lr=1e-2, progress=False)
    fit(_toy_model(), data, train_idx, val_idx, FitOptions(out_dir=tmp_path / "straight", epochs=3, **opts))
    fit(_toy_model(), data, train_idx, val_idx, FitOptions(out_dir=tmp_path / "cut", epochs=2, **opts))
    fit(_toy_model(seed=5), data, train_idx, val_idx, FitOptions(out_dir=tmp_path / "cut", epochs=3, resume=True, **opts))
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["meta"]["epoch"] == b["meta"]["epoch"] == 3
    assert all(torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-6) for k in a["state_dict"])
    log = [json.loads(line) for line in open(tmp_path / "cut" / "log.jsonl")]
    assert [r["epoch"] for r in log] == [1, 2, 3] and log[-1]["train_loss"] == pytest.approx(
        json.loads((tmp_path / "straight" / "log.jsonl").read_text().splitlines()[-1])["train_loss"], abs=1e-6)


DDP_SCRIPT = textwrap.dedent('''
    import faulthandler, json, os, sys
    import torch
    from gatta.decoder import Preprocessing
    from gatta.model.config import GattaConfig
    from gatta.model.network import GattaNet
    from gatta.training.dataset import Pictures
    from gatta.training.streaming import stream_dataset
    from gatta.training.train import FitOptions, dist_info, fit


    class Logged(Pictures):
        """Writes every training picture a DataLoader worker decodes: (rank, epoch, index, the
        worker's parent process). The
        worker knows where from its environment (a forkserver's child has not this script's argv)."""
        def __getitem__(self, i):
            if self.training:
                with open(os.path.join(os.environ["SEEN_DIR"], f"seen-{os.environ['RANK']}-{os.getpid()}.jsonl"), "a") as fh:
                    fh.write(json.dumps([int(os.environ["RANK"]), self.epoch, i, os.getppid()]) + "\\n")
            return super().__getitem__(i)


    if __name__ == "__main__":  # workers start from a forkserver, which imports this file
        tree, out = sys.argv[1], sys.argv[2]
        hang = open(os.path.join(out, f"hang-{os.environ['RANK']}.txt"), "w")
        faulthandler.dump_traceback_later(150, exit=True, file=hang)  # a hang shows where, then fails
        rank, world = dist_info()
        data = stream_dataset(tree, Preprocessing(16), workers=2)
        data.reader = Logged
        torch.manual_seed(0)
        model = GattaNet(GattaConfig(num_classes=3, d=4, image_size=16, alpha_init=0.1))
        train_idx = torch.tensor([i for i in range(len(data)) if i % 5])
        val_idx = torch.tensor([i for i in range(len(data)) if i % 5 == 0])
        fit(model, data, train_idx, val_idx, FitOptions(stage="head", out_dir=out, epochs=2, batch_size=4, lr=1e-2,
                                                        progress=False, precision="fp32"))
        torch.save(model.head.state_dict(), os.path.join(out, f"head-{rank}.pt"))
        json.dump(train_idx.tolist(), open(os.path.join(out, "train_idx.json"), "w"))
        json.dump(os.getpid(), open(os.path.join(out, f"pid-{rank}.json"), "w"))
''')


def test_ddp_streams_every_picture_once_per_epoch_on_two_cpu_ranks(tmp_path):
    """torchrun, 2 gloo ranks, 2 DataLoader workers each: per epoch the ranks together decode
    every training picture exactly once, and they end with identical head weights."""
    tree = tiny_imagenet(tmp_path / "tiny", per_class=9)  # 27 pictures, 21 for training
    packed = tar_tree(tree, tmp_path / "tiny.tar", "tiny-imagenet-200")
    (tmp_path / "run").mkdir()
    script = tmp_path / "ddp_stream.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "SEEN_DIR": str(tmp_path / "run")}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script), str(packed), str(tmp_path / "run")],
                         env=env, capture_output=True, text=True, timeout=300)
    run = tmp_path / "run"
    hangs = "".join(f.read_text() for f in sorted(run.glob("hang-*.txt")))
    assert ddp.returncode == 0, hangs + ddp.stderr[-3000:]
    train_idx = json.loads((run / "train_idx.json").read_text())
    rows = [json.loads(line) for f in run.glob("seen-*.jsonl") for line in f.read_text().splitlines()]
    for epoch in (1, 2):
        seen = [i for r, e, i, _ in rows if e == epoch]
        assert sorted(seen) == train_idx, epoch  # every picture exactly once across ranks
        assert {r for r, e, _, _ in rows if e == epoch} == {0, 1}
    # the workers were not forked from a rank (which holds gloo's threads) but from a forkserver
    ranks = {json.loads((run / f"pid-{r}.json").read_text()) for r in (0, 1)}
    assert {parent for *_, parent in rows}.isdisjoint(ranks)
    heads = [torch.load(run / f"head-{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    assert not torch.equal(heads[0]["alpha"], torch.full_like(heads[0]["alpha"], 0.1))  # it trained
    assert len((run / "log.jsonl").read_text().splitlines()) == 2


def test_a_listing_sent_to_a_worker_carries_its_names_once(tmp_path):
    """What a forkserver worker gets: the names as one bytes buffer (not also the list of
    strings), which still name and read every picture; no open file handle."""
    import pickle

    tree = tiny_imagenet(tmp_path / "tiny", per_class=3)
    listing = list_dataset(tar_tree(tree, tmp_path / "tiny.tar", "tiny-imagenet-200"), "train")
    listing.read(0)  # opens this process's handle
    sent = pickle.loads(pickle.dumps(listing))
    assert sent.files is None and sent._handle is None
    assert len(sent) == len(listing) == 9
    assert [sent.name(i) for i in range(9)] == listing.files
    assert all(sent.read(i) == listing.read(i) for i in range(9))


ORPHAN_SCRIPT = textwrap.dedent('''
    import os, sys, time
    import torch, torch.distributed as dist
    from gatta.decoder import Preprocessing
    from gatta.training.streaming import stream_dataset

    if __name__ == "__main__":
        dist.init_process_group("gloo", init_method=f"file://{sys.argv[2]}", rank=0, world_size=1)
        data = stream_dataset(sys.argv[1], Preprocessing(16), workers=2)
        batches, _ = data.train_batches(torch.arange(len(data)), epoch=1, seed=0, batch_size=2)
        next(batches)  # the forkserver and both workers run
        print("reading", flush=True)
        time.sleep(300)
''')


def _running(pid: int) -> bool:
    """Whether ``pid`` runs: exists and is not a zombie (reaped by no one yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process tree from /proc")
def test_forkserver_workers_end_with_a_killed_rank(tmp_path):
    """A rank killed outright (SIGKILL, as the OOM killer does) takes its forkserver and
    DataLoader workers with it, within seconds: they do not read on for nobody."""
    import signal
    import time

    from gatta.serving.launcher import descendants

    tree = tiny_imagenet(tmp_path / "tiny", per_class=4)
    packed = tar_tree(tree, tmp_path / "tiny.tar", "tiny-imagenet-200")
    script = tmp_path / "orphans.py"
    script.write_text(ORPHAN_SCRIPT)
    rank = subprocess.Popen([sys.executable, str(script), str(packed), str(tmp_path / "store")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, text=True)
    try:
        assert rank.stdout.readline().strip() == "reading"
        helpers = set(descendants(rank.pid)) - {rank.pid}
        assert len(helpers) >= 3  # the forkserver and two workers (and a resource tracker)
    finally:
        rank.kill()
        rank.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_running(p) for p in helpers):
        time.sleep(0.5)
    left = [p for p in helpers if _running(p)]
    for p in left:  # leave nothing behind, even when failing
        os.kill(p, signal.SIGKILL)
    assert not left, f"{len(left)} of {len(helpers)} helper processes outlived the rank"


def test_cli_streams_a_tar_and_resumes(tmp_path):
    from helpers import make_checkpoint

    tree = tiny_imagenet(tmp_path / "tiny", per_class=6)
    packed = tar_tree(tree, tmp_path / "tiny.tar", "tiny-imagenet-200")
    ckpt = make_checkpoint(tmp_path / "toy.pt", num_classes=3, d=4, image_size=16, alpha=0.1)
    cli = [sys.executable, "-m", "gatta.training.cli", "head", "--backbone-ckpt", str(ckpt), "--data", str(packed),
           "--data-mode", "stream", "--out", str(tmp_path / "run"), "--batch-size", "4", "--num-workers", "1",
           "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cli + ["--epochs", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(cli + ["--epochs", "2", "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming head training at epoch 2" in second.stdout
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    # the official val/ is the test set: every one of its pictures, through the evaluation transform
    test = subprocess.run([sys.executable, "-m", "gatta.training.cli", "eval", "--ckpt", str(tmp_path / "run" / "best.pt"),
                           "--data", str(packed), "--split", "test", "--data-mode", "stream", "--num-workers", "1", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert test.returncode == 0, test.stderr[-2000:]
    assert json.loads(test.stdout)["rows"][0]["n"] == 6
