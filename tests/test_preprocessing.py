"""The preprocessing recorded with the weights: torchvision's evaluation transform to the pixel
for ResNets, today's squash for the toy model and old checkpoints, and one array for the same
picture in training evaluation, the client and the server's preprocessing model."""

import importlib.util
import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import json_format
from PIL import Image

from gatta.contract import ModelMetadata
from gatta.decoder import Preprocessing, decode_image, pil_to_array
from gatta.model.config import GattaConfig, imagenet_preprocessing


def _photo(width=40, height=24, seed=0) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    pixels = np.stack([x * 255 // width, y * 255 // height, rng.integers(0, 255, (height, width))], -1)
    return Image.fromarray(pixels.astype(np.uint8))


def test_crop_is_torchvisions_evaluation_transform_and_squash_is_todays_resize():
    from torchvision import transforms as T

    for w, h in [(300, 200), (200, 301), (97, 61), (224, 224)]:
        img = _photo(w, h)
        ours = pil_to_array(img, imagenet_preprocessing(224))
        theirs = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(224)])(img)).transpose(2, 0, 1)
        assert ours.shape == (3, 224, 224) and np.array_equal(ours, theirs), (w, h)
        small = pil_to_array(img, imagenet_preprocessing(64))  # int(64 / 0.875) = 73, then 64
        assert np.array_equal(small, np.asarray(T.Compose([T.Resize(73), T.CenterCrop(64)])(img)).transpose(2, 0, 1))
        squashed = np.asarray(img.resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
        assert np.array_equal(pil_to_array(img, 32), squashed) and np.array_equal(pil_to_array(img, Preprocessing(32)), squashed)
    assert imagenet_preprocessing(224).resize_side == 256


def test_record_round_trips_checks_the_config_and_old_checkpoints_squash(tmp_path):
    from helpers import make_checkpoint

    from gatta.model.checkpoint import load_checkpoint

    # a checkpoint written before the preprocessing record existed: its config has no such key
    payload = torch.load(make_checkpoint(tmp_path / "old.pt", image_size=32), weights_only=False)
    del payload["config"]["preprocessing"]
    torch.save(payload, tmp_path / "old.pt")
    model, _ = load_checkpoint(tmp_path / "old.pt")
    cfg = model.config
    assert cfg.preprocessing == Preprocessing(32, "squash", 1.0, "bilinear", cfg.mean, cfg.std)
    assert GattaConfig.from_dict(cfg.to_dict()) == cfg
    prep = imagenet_preprocessing(64)
    resnet = GattaConfig(backbone="resnet18", image_size=64, mean=prep.mean, std=prep.std, preprocessing=prep.to_dict())
    assert resnet.to_dict()["preprocessing"] == {"input_size": 64, "resize": "crop", "crop_pct": 0.875,
                                                  "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
                                                  "std": [0.229, 0.224, 0.225]}
    with pytest.raises(ValueError, match="its mean is .*0.485.* the model's"):
        GattaConfig(image_size=64, preprocessing=prep)  # CIFAR mean/std in the config
    with pytest.raises(ValueError, match="its image_size is 64, the model's 32"):
        GattaConfig(preprocessing=Preprocessing(64))
    with pytest.raises(ValueError, match="resize 'stretch' is not one of squash, crop"):
        Preprocessing(32, resize="stretch")
    # a repository exported before the record: the client and server squash to image_size
    old = ModelMetadata.from_json(json.dumps({"image_size": 16, "d": 2, "labels": ["a"], "layers": []}))
    assert old.preprocessing == Preprocessing(16)


def _server_model(meta: ModelMetadata, tmp_path: Path):
    """The preprocessing model exactly as gatta-export writes it, loaded as Triton's python
    backend loads it, with the config.pbtxt it would read (as JSON, as Triton hands it over).
    Only the stub of triton_python_backend_utils stands in: decoding never touches it."""
    from gatta.export.repository import RepositoryOptions, preprocess_config, preprocess_model_source

    source = tmp_path / "model.py"
    source.write_text(preprocess_model_source())
    sys.modules.setdefault("triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location(f"preprocess_{id(meta)}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = json_format.MessageToDict(preprocess_config(meta, RepositoryOptions()), preserving_proto_field_name=True)
    model.initialize({"model_config": json.dumps(config)})
    return model


@pytest.mark.parametrize("kind", ["toy", "resnet18"])
def test_non_square_jpeg_is_the_same_array_in_training_client_and_server(kind, tmp_path):
    from gatta.client import load_image
    from gatta.export.signature import signature_for
    from gatta.model.checkpoint import load_checkpoint, save_checkpoint
    from gatta.training.data import load_images
    from gatta.model.network import GattaNet
    from gatta.training.streaming import stream_dataset

    size = 16 if kind == "toy" else 32
    if kind == "toy":
        cfg = GattaConfig(num_classes=2, d=4, image_size=size)
    else:
        prep = imagenet_preprocessing(size)
        cfg = GattaConfig(backbone="resnet18", num_classes=2, d=4, image_size=size, mean=prep.mean, std=prep.std,
                          preprocessing=prep)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "model.pt", GattaNet(cfg))
    model, _ = load_checkpoint(ckpt)
    prep = model.config.preprocessing
    assert prep.resize == ("squash" if kind == "toy" else "crop")

    buf = io.BytesIO()
    _photo(60, 36).save(buf, "JPEG", quality=90)
    blob = buf.getvalue()
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        (tmp_path / "data" / c / "photo.jpg").write_bytes(blob)

    in_memory = load_images(tmp_path / "data", prep).images[0].numpy().astype(np.float32) / 255
    streamed = next(iter(stream_dataset(tmp_path / "data", prep, workers=0).eval_batches(torch.tensor([0]), 1)))[0][0].numpy()
    served = ModelMetadata.from_json(signature_for(model).to_json())  # what the client reads from Triton
    client = load_image(blob, served.preprocessing)
    server = _server_model(served, tmp_path).image(np.bytes_(blob))

    assert in_memory.shape == streamed.shape == client.shape == server.shape == (3, size, size)
    assert np.array_equal(in_memory, streamed) and np.array_equal(streamed, client) and np.array_equal(client, server)
    squash = decode_image(blob, size).astype(np.float32) / 255
    if kind == "toy":
        assert np.array_equal(client, squash)  # today's behaviour exactly
    else:
        assert np.abs(client - squash).max() > 0.1  # the centre crop, not a squash
