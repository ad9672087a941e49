"""Several models in one repository and one real tritonserver: gatta-export adds a model
beside another without touching it and refuses name clashes; gatta-serve waits for, serves
and drains them all; gatta-client reaches each with --model and will not guess between them."""

import hashlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import BETA_CLASSES
from gatta.client import AmbiguousModel, ClientError, GattaClient
from gatta.client.cli import main as client_cli
from gatta.export.cli import main as export_cli
from gatta.export.exporter import ExportOptions, export_checkpoint, gattanet_models
from gatta.export.verify import ExportError, ort_session
from gatta.serving.cli import served_models
from gatta.serving.launcher import start_server
from helpers import make_checkpoint

ALL_MODELS = ["alpha", "alpha_encoded", "alpha_preprocess", "beta", "beta_encoded", "beta_preprocess"]
SHAPES = {  # per model (tests/conftest.py two_models): input side, classes, gatta map per layer
    "alpha": (16, 4, {"conv1": [16, 16], "conv2": [8, 8], "conv3": [4, 4], "dense1": [256], "logits": [4]}),
    "beta": (32, 7, {"stem": [16, 16], "layer1": [8, 8], "layer2": [4, 4], "layer3": [2, 2], "avgpool": [512],
                     "logits": [7]}),
}


def _files(folder):
    """Every file below ``folder``: relative path -> (sha256, mtime_ns)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _family(repo, name):
    return {f: _files(repo / f) for f in (name, name + "_preprocess", name + "_encoded") if (repo / f).exists()}


def test_export_adds_a_model_beside_another_and_refuses_clashes(tmp_path):
    a = make_checkpoint(tmp_path / "a.pt", num_classes=4, d=8, image_size=16)
    b = make_checkpoint(tmp_path / "b.pt", num_classes=7, d=4, image_size=24, seed=1)
    repo = tmp_path / "repo"
    export_checkpoint(a, ExportOptions(out=repo, name="alpha", flavour="python", max_batch=8))
    alpha = _family(repo, "alpha")
    report = export_checkpoint(b, ExportOptions(out=repo, name="beta", flavour="python", max_batch=8))
    assert _family(repo, "alpha") == alpha  # not a byte or a timestamp changed
    assert sorted(os.listdir(repo)) == ALL_MODELS and gattanet_models(repo) == ["alpha", "beta"]
    assert served_models(repo) == ["alpha", "beta"]  # what gatta-serve announces
    assert all(path.startswith(str(repo / "beta")) for path in report.files)

    def refused(ckpt, **kw):
        with pytest.raises(ExportError) as info:
            export_checkpoint(ckpt, ExportOptions(out=repo, flavour="python", max_batch=8, **kw))
        assert "\n" not in str(info.value)
        assert _family(repo, "alpha") == alpha and not [p for p in os.listdir(repo) if p.startswith(".")]
        return str(info.value)

    # the same name for another model: refused, --force named as the way to replace it
    message = refused(b, name="alpha")
    assert "holds another model (4 classes, 16x16 input" in message and "(7 classes, 24x24 input" in message
    assert "another --name" in message and "--force" in message
    # a name whose folders belong to another model: refused even with --force
    for name in ("alpha_encoded", "alpha_preprocess"):
        assert "which belongs to model 'alpha'; choose another --name" in refused(b, name=name, force=True)
    assert "already exists; pass --force" in refused(a, name="alpha")  # the version is there
    # a model of another system whose folder a gattanet export would need
    foreign = repo / "gamma_encoded"
    (foreign / "1").mkdir(parents=True)
    (foreign / "config.pbtxt").write_text('name: "gamma_encoded"\nbackend: "python"\n')
    assert "a model that gatta-export did not write" in refused(a, name="gamma", force=True)
    export_checkpoint(a, ExportOptions(out=repo, name="gamma", flavour="python", encoded=False))  # needs no such folder
    assert (foreign / "config.pbtxt").read_text().startswith('name: "gamma_encoded"')

    # a new version of the same model keeps the old; --force over another model replaces all of it
    beta = _family(repo, "beta")
    export_checkpoint(a, ExportOptions(out=repo, name="alpha", version=2, flavour="python", max_batch=8))
    assert sorted(os.listdir(repo / "alpha")) == ["1", "2", "config.pbtxt", "labels.txt"]
    export_checkpoint(b, ExportOptions(out=repo, name="alpha", flavour="python", max_batch=8, force=True))
    assert sorted(os.listdir(repo / "alpha")) == ["1", "config.pbtxt", "labels.txt"]
    assert len((repo / "alpha" / "labels.txt").read_text().split()) == 7
    assert _family(repo, "beta") == beta


def test_export_cli_says_how_to_add_a_model(tmp_path):
    a = make_checkpoint(tmp_path / "a.pt", num_classes=4, d=8, image_size=16)
    b = make_checkpoint(tmp_path / "b.pt", num_classes=7, d=4, image_size=24, seed=1)
    help_text = CliRunner().invoke(export_cli, ["--help"]).output
    assert "Several models in one server" in help_text and "own --name" in help_text
    repo = tmp_path / "repo"
    r = CliRunner().invoke(export_cli, ["--ckpt", str(a), "--out", str(repo), "--flavor", "python", "--no-encoded"])
    assert r.exit_code == 0
    assert f"model repository ready: {repo} (gattanet model gatta; gatta-serve serves it)" in r.output
    r = CliRunner().invoke(export_cli, ["--ckpt", str(b), "--out", str(repo), "--flavor", "python", "--no-encoded"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "another --name" in r.output
    r = CliRunner().invoke(export_cli, ["--ckpt", str(b), "--out", str(repo), "--flavor", "python", "--no-encoded",
                                        "--name", "b"])
    assert r.exit_code == 0 and "(gattanet models b, gatta; gatta-serve serves them all)" in r.output
    r = CliRunner().invoke(export_cli, ["--ckpt", str(b), "--out", str(repo), "--name", "../b"])
    assert r.exit_code == 1 and "model name '../b' must be" in r.output


def _arrays(size, n=3, seed=0):
    """Float images already at the model's size: the client sends them as they are."""
    return list(np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_each_model_answers_as_onnx_runtime_on_its_own_graph(two_model_triton, two_models, protocol):
    repo, _ = two_models
    url = two_model_triton.http_url if protocol == "http" else two_model_triton.grpc_url
    for name, (size, classes, maps) in SHAPES.items():
        with GattaClient(url, protocol, model=name) as client:
            info = client.info
            assert (info.name, info.image_size, len(info.labels)) == (name, size, classes)
            assert [(l.name, l.shape) for l in info.layers] == list(maps.items())
            images = _arrays(size)
            lesion = "c.cd." if name == "alpha" else "c.c.d."
            results = client.classify(images, lesion=lesion, top_k=classes)
            mask = np.tile(info.lesion_mask(lesion), (len(images), 1))
            session = ort_session(repo / name / "1" / "model.onnx")
            names = ["probs", "q_avg", *(f"gatta_{layer}" for layer in maps)]
            ref = dict(zip(names, session.run(names, {"image": np.stack(images), "lesion_mask": mask})))
            for i, r in enumerate(results):
                assert r.ok and r.index == int(ref["probs"][i].argmax()), (name, i)
                probs = np.array([dict(r.top_k)[label] for label in info.labels])
                assert np.abs(probs - ref["probs"][i]).max() <= 1e-5, name
                assert np.abs(r.q_avg - ref["q_avg"][i]).max() <= 1e-5, name
                for layer in maps:
                    assert np.abs(r.gatta[layer] - ref[f"gatta_{layer}"][i]).max() <= 1e-5, (name, layer)
            # each model's encoded-image ensemble reaches that model
            buf = io.BytesIO()
            Image.fromarray((images[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(buf, "PNG")
            encoded = client.infer_encoded([buf.getvalue()])["probs"]
            direct = client.classify([buf.getvalue()], top_k=classes, maps=False)[0]
            assert encoded.shape == (1, classes)
            assert np.abs(encoded[0] - [dict(direct.top_k)[label] for label in info.labels]).max() <= 1e-5
    assert GattaClient(url, protocol, model="beta").info.labels == BETA_CLASSES


def test_client_never_guesses_between_models(two_model_triton, tmp_path):
    url = two_model_triton.http_url
    with pytest.raises(AmbiguousModel) as info:
        GattaClient(url)
    assert str(info.value) == (f"the server at {url} hosts 2 gattanet models (alpha, beta); "
                               "choose one with --model NAME")
    assert info.value.names == ["alpha", "beta"]
    with pytest.raises(ClientError, match="model 'zeta' is not on the server .* it has: alpha, alpha_encoded"):
        GattaClient(url, model="zeta")
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 20, 3), dtype=np.uint8)).save(image)
    r = CliRunner().invoke(client_cli, ["classify", str(image), "--url", url])
    assert r.exit_code == 1 and "hosts 2 gattanet models (alpha, beta); choose one with --model NAME" in r.output
    assert r.output.count("\n") == 1
    for name in ("alpha", "beta"):
        r = CliRunner().invoke(client_cli, ["classify", str(image), "--url", url, "--model", name, "--json"])
        assert r.exit_code == 0, r.output
        expected = GattaClient(url, model=name).classify([str(image)])[0]
        got = json.loads(r.output)
        assert got["label"] == expected.label and abs(got["prob"] - expected.prob) <= 1e-6
        r = CliRunner().invoke(client_cli, ["info", "--url", url, "--model", name, "--json"])
        assert json.loads(r.output)["image_size"] == SHAPES[name][0]
        r = CliRunner().invoke(client_cli, ["health", "--url", url, "--model", name, "--infer"])
        assert r.exit_code == 0 and r.output.startswith("live=yes ready=yes model_ready=yes infer=yes (")
    # the container's HEALTHCHECK names no model: on a server of several it probes every one
    r = CliRunner().invoke(client_cli, ["health", "--url", url, "--infer"])
    assert r.exit_code == 0 and re.fullmatch(r"live=yes ready=yes; alpha: model_ready=yes infer=yes \(\d+\.\d ms\); "
                                             r"beta: model_ready=yes infer=yes \(\d+\.\d ms\)\n", r.output), r.output


def test_ready_means_every_model_and_the_drain_unloads_them_all(two_models, tmp_path):
    """A server of its own, since the drain unloads the models the shared fixture serves. That a
    drain lets a request in flight finish is tests/test_shutdown.py's; here: every model."""
    repo, _ = two_models
    server = start_server(repo, log_path=tmp_path / "triton.log", wait=180)
    try:
        assert server.models == ALL_MODELS and server.models_not_ready() == []  # all ready on return
        clients = {name: GattaClient(server.http_url, model=name, retries=0) for name in SHAPES}
        for name, client in clients.items():
            assert client.infer(np.stack(_arrays(SHAPES[name][0])))["probs"].shape == (3, SHAPES[name][1])
        assert server.drain(timeout=60) == ALL_MODELS
        assert server.models_not_ready() == ALL_MODELS
        for name, client in clients.items():
            with pytest.raises(Exception, match=name):  # refused, naming the model
                client.infer(np.stack(_arrays(SHAPES[name][0])))
    finally:
        code = server.stop()
    assert code == 0


def test_demo_and_viewer_serve_the_bundled_models_unless_given_others():
    from gatta.models import BUNDLED
    from gatta.serving.default_model import checkpoints_or_bundled

    assert checkpoints_or_bundled(None) == BUNDLED and set(BUNDLED) == {"cifar10", "tiny-imagenet"}
    assert checkpoints_or_bundled(["r=runs/r/best.pt"]) == {"r": Path("runs/r/best.pt")}
