"""Loaders for the real layouts, the seeded split, normalisation statistics, augmentation."""

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gatta.decoder import Preprocessing, decode_image
from gatta.lesion import LesionError, parse_lesion, single_layer_patterns
from gatta.training.augment import augment
from gatta.training.data import DataError, channel_stats, load_images, stratified_split
from gatta.training.layouts import list_dataset

from helpers import jpeg_bytes, tar_tree, tiny_imagenet, write_file, write_image_folder

CIFAR_JPEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpg.tar.gz"


def test_stratified_split_is_seeded_and_proportional():
    labels = torch.arange(1000) % 10
    tr, va = stratified_split(labels, 100, seed=3)
    tr2, va2 = stratified_split(labels, 100, seed=3)
    assert torch.equal(va, va2) and len(va) == 100 and len(tr) == 900
    assert labels[va].bincount().tolist() == [10] * 10
    assert not set(tr.tolist()) & set(va.tolist())
    assert not torch.equal(va, stratified_split(labels, 100, seed=4)[1])


def test_cifar10_pickle_layout(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        data = rng.integers(0, 255, (4, 3072), dtype=np.uint8)
        pickle.dump({"data": data, "labels": [i % 10, 1, 2, 3]}, open(root / f"data_batch_{i}", "wb"))
    pickle.dump({"data": data, "labels": [0, 0, 0, 0]}, open(root / "test_batch", "wb"))
    pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, open(root / "batches.meta", "wb"))
    train = load_images(tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and train.labels[:4].tolist() == [1, 1, 2, 3]
    assert torch.equal(train.images[-4:], torch.from_numpy(data.reshape(4, 3, 32, 32)))
    assert load_images(tmp_path, split="test").labels.tolist() == [0, 0, 0, 0]


def test_one_rule_names_each_source_kind_for_every_loader(tmp_path, monkeypatch):
    """CIFAR pickles, folders, plain and compressed tars and synthetic data are told apart once
    (layouts.source_kind); an image folder with a class called ``meta`` is a folder everywhere
    (the streamed path's own CIFAR rule once took it for pickles and refused to stream it)."""
    import tarfile

    from gatta.training.layouts import source_kind
    from gatta.training.streaming import choose_mode

    cifar = tmp_path / "c" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    (cifar / "data_batch_1").write_bytes(b"")
    write_image_folder(tmp_path / "photos", n_per_class=2, classes=("meta", "ship"))
    with tarfile.open(tmp_path / "p.tar", "w") as tar:
        tar.add(tmp_path / "photos", arcname="photos")
    with tarfile.open(tmp_path / "p.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "photos", arcname="photos")
    kinds = {"synthetic:8": "synthetic", cifar: "cifar-pickles", cifar.parent: "cifar-pickles",
             tmp_path / "photos": "folder", tmp_path / "p.tar": "tar", tmp_path / "p.tar.gz": "tar.gz",
             tmp_path / "absent": None}
    assert {k: source_kind(k) for k in kinds} == kinds
    # a relative folder whose name starts with the word is a folder, not synthetic data
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").rename(tmp_path / "synthetic_photos")
    assert [source_kind(s) for s in ("synthetic_photos", "synthetic", "synthetic:8:2")] == ["folder", "synthetic", "synthetic"]
    (tmp_path / "synthetic_photos").rename(tmp_path / "photos")
    assert choose_mode(tmp_path / "photos", 16, "stream") == ("stream", None)
    assert load_images(tmp_path / "photos").class_names == ["meta", "ship"]


def test_image_folder_and_tar(tmp_path):
    import tarfile

    write_image_folder(tmp_path / "tree" / "train", n_per_class=3)
    folder = load_images(tmp_path / "tree")
    assert folder.class_names == ["cat", "dog", "ship"] and folder.images.shape == (9, 3, 16, 16)
    with tarfile.open(tmp_path / "d.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree" / "train", arcname="train")
    packed = load_images(tmp_path / "d.tar.gz")
    assert torch.equal(packed.images, folder.images) and torch.equal(packed.labels, folder.labels)
    assert load_images(tmp_path / "tree", image_size=8).images.shape == (9, 3, 8, 8)


def test_a_source_without_a_test_split_refuses_it(tmp_path):
    """gatta-train eval --split test must not score training pictures as if they were held out."""
    import tarfile

    from gatta.training.data import load_dataset

    write_image_folder(tmp_path / "tree" / "train", n_per_class=2)
    with tarfile.open(tmp_path / "d.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree" / "train", arcname="train")
    with pytest.raises(DataError, match=r"d\.tar\.gz: no test split in it"):
        load_images(tmp_path / "d.tar.gz", split="test")
    with pytest.raises(DataError, match="synthetic:16: no test split in it"):
        load_dataset("synthetic:16", 16, split="test")


def test_memory_mode_lists_every_source_as_streaming_does(tmp_path):
    """One lister for both modes: a leading folder every picture shares is not a class, and a
    Tiny-ImageNet tree nested one level or packed in a .tar.gz keeps its classes (not one class
    "images") and its official val/ as the test split."""
    for c in ("dog", "cat"):
        for n in range(3):
            write_file(tmp_path / "photos" / "all" / c / f"{n}.jpg", jpeg_bytes(n))
    photos = load_images(tmp_path / "photos", 8)
    assert photos.class_names == ["cat", "dog"] and photos.labels.tolist() == [0, 0, 0, 1, 1, 1]
    tree = tiny_imagenet(tmp_path / "nest" / "tiny-imagenet-200")
    packed = tar_tree(tree, tmp_path / "tiny.tar.gz", "tiny-imagenet-200", "w:gz")
    for split, folder in (("train", "train"), ("test", "val")):
        listing = list_dataset(tree, folder)
        pictures = torch.from_numpy(np.stack([decode_image(listing.read(i), 8) for i in range(len(listing))]))
        for source in (tmp_path / "nest", packed):
            memory = load_images(source, 8, split=split)
            assert memory.class_names == listing.class_names and len(memory.class_names) == 3, source
            assert torch.equal(memory.labels, listing.labels) and torch.equal(memory.images, pictures)


@pytest.mark.skipif(not CIFAR_JPEG.exists(), reason=f"{CIFAR_JPEG} is not here")
def test_the_shipped_cifar_archive_gives_the_pictures_and_split_it_always_gave(tmp_path, monkeypatch):
    """The shipped model's validation split must not move: the figures are the loader's before
    it listed a .tar.gz through training/layouts.py (commit 5446f58): same pictures in the same
    order (within a class, the archive's), same labels, classes and split."""
    monkeypatch.setenv("GATTA_CACHE", str(tmp_path))  # decode the archive, not a cached copy
    data = load_images(CIFAR_JPEG, Preprocessing(32), workers=2)
    for cached in tmp_path.glob("images-*.npz"):
        cached.unlink()
    sha1 = lambda t: hashlib.sha1(t.numpy().tobytes()).hexdigest()  # noqa: E731
    assert data.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                "ship", "truck"]
    assert tuple(data.images.shape) == (50000, 3, 32, 32)
    assert sha1(data.labels) == "20fb9f3f5d5fbc5e712f07ecd00099e5283a1c45"
    assert sha1(data.images) == "94adae07354d079596f7171d927e7a4f1cf1ecd4"
    _, val = stratified_split(data.labels, 5000, seed=0)  # the recipe's --val-size and --split-seed
    assert val[:10].tolist() == [38, 48, 58, 60, 63, 74, 86, 119, 129, 138]
    assert sha1(val) == "7bed2b0763f02bd790c282152e5f894830ff5e74"
    assert sha1(data.images[val]) == "976674c024101658520110936f9d4dc20660da32"


def test_missing_and_empty_data(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_images(tmp_path / "empty")


def test_channel_stats_and_identity_augmentation():
    images = torch.full((2, 3, 4, 4), 51, dtype=torch.uint8)
    mean, std = channel_stats(images)
    assert mean == pytest.approx([0.2] * 3) and std == pytest.approx([0.0] * 3)
    x = torch.rand(3, 3, 8, 8)
    assert torch.allclose(augment(x, rotation=0, shift=0, flip=False), x, atol=1e-5)
    flipped = augment(x, torch.Generator().manual_seed(0), rotation=0, shift=0, flip=True)
    for a, b in zip(flipped, x):
        assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, b.flip(-1), atol=1e-5)


def test_lesion_notation():
    kinds = ["conv", "conv", "conv", "dense", "dense"]
    assert parse_lesion("cccdd", kinds) == [1.0] * 5
    assert parse_lesion("c.cdd", kinds) == [1, 0, 1, 1, 1]
    assert parse_lesion(".....", kinds) == [0.0] * 5
    assert len(single_layer_patterns(kinds)) == 10 and "...d." in single_layer_patterns(kinds)
    for bad in ("ccc", "cccddd", "ddccc", "cc?dd"):
        with pytest.raises(LesionError, match="cccdd"):
            parse_lesion(bad, kinds)


def test_a_changed_source_replaces_its_cached_array_instead_of_adding_one(tmp_path, monkeypatch):
    import os

    cache = tmp_path / "cache"
    monkeypatch.setenv("GATTA_CACHE", str(cache))
    root = tmp_path / "tree"
    write_image_folder(root, n_per_class=2)
    first = load_images(root, 16)
    assert len(list(cache.glob("images-*.npz"))) == 1
    assert torch.equal(load_images(root, 16).images, first.images)  # read back from the cache
    before = {p.name for p in cache.glob("images-*.npz")}
    load_images(root, 8)  # another decoding of the same source is another array
    eight = {p.name for p in cache.glob("images-*.npz")} - before
    assert len(eight) == 1
    (cache / "images-0123456789abcdef.npz").write_bytes(b"")  # named before versions: dead
    sixteen = {p.name for p in cache.glob("images-*.npz")} - eight
    st = root.stat()
    os.utime(root, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the source changed
    again = load_images(root, 16)
    names = {p.name for p in cache.glob("images-*.npz")}
    assert len(names) == 2 and eight <= names and not sixteen & names  # replaced, the 8 px one kept
    assert torch.equal(again.images, first.images) and not list(cache.glob("*.tmp.npz"))
    for damaged in (b"garbage", b"PK\x03\x04 truncated"):  # not an archive; a cut-off one
        for p in cache.glob("images-*.npz"):
            p.write_bytes(damaged)
        assert torch.equal(load_images(root, 16).images, first.images)  # decoded again, cache rewritten
    assert len(list(cache.glob("images-*.npz"))) == 2
