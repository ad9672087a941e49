"""Several backbone families in one model repository, served by a real tritonserver: each one's
answers over HTTP and gRPC equal ONNX Runtime's with lesion masks and query_bias, and
``gatta-client classify --maps`` writes every attached layer's map, whatever its count and shapes."""

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

SIZE = 64
CLASSES = ["acorn", "bagel", "canoe", "daisy", "eel"]
# served name -> backbone: three families, two sources, five and six attached layers
SERVED = {"effb0": "efficientnet_b0", "tconvnext": "timm:convnext_atto", "tresnet": "timm:resnet18"}


@pytest.fixture(scope="module")
def families_server(tmp_path_factory):
    from gatta.serving.launcher import start_server
    from gatta.model.checkpoint import save_checkpoint

    from helpers import calibrate_batch_norms, make_model

    root = tmp_path_factory.mktemp("families")
    models = {}
    for name, backbone in SERVED.items():
        model = make_model(num_classes=len(CLASSES), d=8, image_size=SIZE, backbone=backbone, alpha=0.05,
                           qk_batchnorm=True, gatta_layernorm=True, class_names=CLASSES)
        calibrate_batch_norms(model, SIZE)
        ckpt = save_checkpoint(root / f"{name}.pt", model, {"stage": "head", "epoch": 1, "val_size": 16, "split_seed": 0})
        export_checkpoint(ckpt, ExportOptions(out=root / "repo", name=name, flavour="python", max_batch=8, instances=1))
        models[name] = model
    server = start_server(root / "repo", log_path=root / "triton.log", wait=240)
    yield server, root, models
    server.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_each_family_served_equals_onnx_runtime(families_server, protocol):
    server, root, models = families_server
    url = server.http_url if protocol == "http" else server.grpc_url
    x = np.random.default_rng(0).random((3, 3, SIZE, SIZE), dtype=np.float32)
    for name, model in models.items():
        layers = [t.name for t in model.taps]
        session = ort_session(root / "repo" / name / "1" / "model.onnx")
        names = ["logits", "probs", "q_avg", *(f"gatta_{n}" for n in layers)]
        with GattaClient(url, protocol, model=name) as client:
            assert [l.name for l in client.info.layers] == layers
            off = "." * len(layers)
            lesion = "".join(c if i % 2 else "." for i, c in enumerate(client.info.full_pattern))
            for lesion_, prior in ((None, None), (lesion, None), (None, "canoe"), (off, None)):
                out = client.infer(x, lesion=lesion_, prior=prior)
                mask = np.broadcast_to(client.lesion_mask(lesion_), (3, len(layers))).astype(np.float32)
                bias = np.broadcast_to(client.query_bias(prior), (3, 8)).astype(np.float32)
                ref = dict(zip(names, session.run(names, {"image": x, "lesion_mask": mask, "query_bias": bias})))
                for tensor in names:
                    assert out[tensor].shape == ref[tensor].shape, (name, tensor)
                    assert np.abs(out[tensor] - ref[tensor]).max() <= 1e-5, (name, tensor, lesion_, prior)
            # every layer off is the backbone alone, exactly as PyTorch computes it
            with torch.no_grad():
                alone = model.forward_backbone(torch.from_numpy(x)).numpy()
            off_logits = client.infer(x, lesion=off)["logits"]
            assert np.abs(off_logits - alone).max() <= 5e-5 * np.abs(alone).max()


def test_classify_writes_every_layers_map_for_each_family(families_server, tmp_path):
    server, _, models = families_server
    img = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(img)
    for name, model in models.items():
        out = CliRunner().invoke(client_cli, ["classify", str(img), "--url", server.http_url, "--model", name,
                                              "--maps", str(tmp_path / name), "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output.strip().splitlines()[-1])["label"] in CLASSES
        raw = np.load(tmp_path / name / "photo.npz")
        for tap in model.taps:
            assert raw[f"gatta_{tap.name}"].shape == tuple(tap.map_shape), (name, tap.name)
        figure = Image.open(tmp_path / name / "photo.png")
        assert figure.width > len(model.taps) * 64  # one panel per attached layer beside the image
