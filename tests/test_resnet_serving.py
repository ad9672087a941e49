"""A ResNet18 GAttANet (the paper's six attached layers, random weights, 64x64 input) from
checkpoint to a real tritonserver and back through the client: HTTP and gRPC, lesion masks,
query_bias, and gatta maps of four sizes plus two dense layers."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gatta.client.cli import main as client_cli
from gatta.client.client import GattaClient
from gatta.export.exporter import ExportOptions, export_checkpoint
from gatta.export.verify import ort_session

LAYERS = {"stem": (32, 32), "layer1": (16, 16), "layer2": (8, 8), "layer3": (4, 4), "avgpool": (512,), "logits": (6,)}
CLASSES = ["acorn", "bagel", "canoe", "daisy", "eel", "fiddle"]


@pytest.fixture(scope="module")
def resnet_server(tmp_path_factory):
    from gatta.serving.launcher import start_server
    from gatta.model.checkpoint import save_checkpoint

    from helpers import make_model

    root = tmp_path_factory.mktemp("resnet")
    model = make_model(num_classes=6, d=8, image_size=64, backbone="resnet18", alpha=0.5,
                       qk_batchnorm=True, gatta_layernorm=True, class_names=CLASSES)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # trained-looking norms: every folded term of the head is exercised
        for bn in (model.head.key_norm, model.head.query_norm):
            bn.running_mean.copy_(torch.randn(8, generator=gen))
            bn.running_var.copy_(torch.rand(8, generator=gen) + 0.5)
            bn.weight.copy_(torch.rand(8, generator=gen) + 0.5)
    ckpt = save_checkpoint(root / "r18.pt", model, {"stage": "head", "epoch": 1, "val_size": 16, "split_seed": 0})
    export_checkpoint(ckpt, ExportOptions(out=root / "repo", name="r18", flavour="python", max_batch=8, instances=1))
    server = start_server(root / "repo", log_path=root / "triton.log", wait=180)
    yield server, root
    server.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_resnet_served_equals_onnx_runtime_with_masks_and_bias(resnet_server, protocol):
    server, root = resnet_server
    url = server.http_url if protocol == "http" else server.grpc_url
    session = ort_session(root / "repo" / "r18" / "1" / "model.onnx")
    names = ["logits", "probs", "q_avg", *(f"gatta_{n}" for n in LAYERS)]
    x = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)
    with GattaClient(url, protocol, model="r18") as client:
        assert [l.name for l in client.info.layers] == list(LAYERS)
        assert client.info.full_pattern == "ccccdd"
        for lesion, prior in ((None, None), ("c.c.dd", None), (None, "canoe"), ("......", None)):
            out = client.infer(x, lesion=lesion, prior=prior)
            mask = np.broadcast_to(client.lesion_mask(lesion), (3, 6)).astype(np.float32)
            bias = np.broadcast_to(client.query_bias(prior), (3, 8)).astype(np.float32)
            ref = dict(zip(names, session.run(names, {"image": x, "lesion_mask": mask, "query_bias": bias})))
            for name in names:
                assert out[name].shape == ref[name].shape, name
                assert np.abs(out[name] - ref[name]).max() <= 1e-5, (name, lesion, prior)
            for layer, shape in LAYERS.items():
                assert out[f"gatta_{layer}"].shape == (3, *shape)
        # the lesions and the prior really reach the graph: each changes the answer
        full = client.infer(x)["logits"]
        assert np.abs(client.infer(x, lesion="c.c.dd")["logits"] - full).max() > 1e-4
        assert np.abs(client.infer(x, prior="canoe")["logits"] - full).max() > 1e-4


def test_classify_cli_writes_six_maps_for_a_resnet(resnet_server, tmp_path):
    server, _ = resnet_server
    img = tmp_path / "photo.jpg"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(img)  # not square
    out = CliRunner().invoke(client_cli, ["classify", str(img), "--url", server.http_url, "--model", "r18",
                                          "--maps", str(tmp_path / "maps"), "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output.strip().splitlines()[-1])
    assert result["label"] in CLASSES
    raw = np.load(tmp_path / "maps" / "photo.npz")
    for layer, shape in LAYERS.items():
        assert raw[f"gatta_{layer}"].shape == shape
    figure = Image.open(tmp_path / "maps" / "photo.png")
    assert figure.width > 6 * 64  # one panel per attached layer beside the image
    # the encoded-image ensemble decodes the same JPEG with the checkpoint's preprocessing
    with GattaClient(server.http_url, "http", model="r18") as client:
        served = client.infer_encoded([img.read_bytes()])["probs"][0]
        local = client.classify([str(img)], maps=False)[0]
    assert abs(float(served.max()) - local.prob) <= 1e-5
