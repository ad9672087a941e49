"""One dataset type, held or streamed: the same seed gives the same pictures, the same order
and the same augmented pixels whichever way a source's pixels are held (training/dataset.py)."""

import tarfile

import pytest
import torch

from gatta.model.config import imagenet_preprocessing
from gatta.training.augment import AUGMENTATIONS
from gatta.training.data import load_dataset, load_images
from gatta.training.streaming import stream_dataset

from helpers import jpeg_bytes, write_file


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """12 JPEGs in 3 class folders, stored at the input size (16 px), and a plain .tar of them."""
    monkeypatch.setenv("GATTA_CACHE", str(tmp_path / "cache"))
    for c, name in enumerate(("cat", "dog", "ship")):
        for n in range(4):
            write_file(tmp_path / "photos" / name / f"{n}.jpg", jpeg_bytes(10 * c + n, 16, 16))
    with tarfile.open(tmp_path / "photos.tar", "w") as tar:
        tar.add(tmp_path / "photos", arcname="photos")
    return tmp_path / "photos", tmp_path / "photos.tar"


def _epoch(data, augmentation, epoch, seed=5):
    batches, steps = data.train_batches(torch.arange(len(data)), epoch, seed, batch_size=5,
                                        augmentation=augmentation, generator=torch.Generator())
    out = list(batches)
    assert len(out) == steps == 3
    return torch.cat([x for x, _ in out]), torch.cat([y for _, y in out])


def test_held_and_streamed_give_the_same_pictures_order_and_augmentation(photos):
    folder, packed = photos
    prep = imagenet_preprocessing(16, 1.0)  # the whole picture, as the shipped Tiny-ImageNet model
    held = load_images(folder, prep)
    streamed = stream_dataset(packed, prep, workers=0)
    assert held.held and not streamed.held and held.class_names == streamed.class_names
    everything = torch.arange(len(held))
    views = held.pictures(everything)
    assert torch.equal(views, streamed.pictures(everything)) and torch.equal(held.labels, streamed.labels)
    seen = {}
    for augmentation in AUGMENTATIONS:
        for epoch in (1, 2):
            x, y = _epoch(held, augmentation, epoch)
            x_streamed, y_streamed = _epoch(streamed, augmentation, epoch)
            assert torch.equal(y, y_streamed), (augmentation, epoch)
            assert torch.equal(x, x_streamed), (augmentation, epoch)
            seen[augmentation, epoch] = x
    # each augmentation does something, its own, and a new epoch draws anew
    plain = seen["none", 1]
    assert torch.allclose(plain * 255, (plain * 255).round(), atol=1e-4)  # the evaluation view, uint8 steps
    for augmentation in ("shift-rotate-flip", "random-resized-crop"):
        assert not torch.equal(seen[augmentation, 1], plain) and not torch.equal(seen[augmentation, 1],
                                                                                  seen[augmentation, 2])
    assert not torch.equal(seen["shift-rotate-flip", 1], seen["random-resized-crop", 1])


def test_load_dataset_gives_one_type_for_every_source_and_mode(photos):
    folder, packed = photos
    prep = imagenet_preprocessing(16, 1.0)
    sets = {(source.name, mode): load_dataset(str(source), prep, workers=0, mode=mode)
            for source in (folder, packed) for mode in ("memory", "stream")}
    sets["synthetic", "memory"] = load_dataset("synthetic:12:3", prep)
    assert len({type(d) for d in sets.values()}) == 1
    assert [d.held for d in sets.values()] == [True, False, True, False, True]
    assert all(d.prep == prep for d in sets.values())  # the crop's size and interpolation: the model's
    with pytest.raises(ValueError, match="augmentation 'crop': choose one of shift-rotate-flip"):
        sets["photos", "memory"].train_batches(torch.arange(12), 1, 0, 4, augmentation="crop")


def test_streamed_crops_are_the_ones_the_shipped_tiny_imagenet_pair_trained_on(photos):
    """Streamed random-resized-crop training as it always was: the epoch's order from a
    generator seeded by seed * 100003 + epoch, each picture cropped from the stored file with
    an rng seeded by (seed, epoch, picture)."""
    import numpy as np

    from gatta.decoder import open_image
    from gatta.training.augment import train_array

    _, packed = photos
    prep = imagenet_preprocessing(16, 1.0)
    streamed = stream_dataset(packed, prep, workers=0)
    x, y = _epoch(streamed, "random-resized-crop", epoch=3, seed=7)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(7 * 100003 + 3))
    crops = [open_image(streamed.listing.read(i), then=lambda img, i=i: train_array(
        img, prep, np.random.default_rng([7, 3, i]))) for i in order.tolist()]
    assert torch.equal(y, streamed.labels[order])
    assert torch.equal(x, torch.from_numpy(np.stack(crops)).float().div(255))
