"""The GPU path the Docker image ships: the python flavour exported for a GPU (KIND_GPU, ONNX
Runtime's CUDA provider) with a CPU twin. Here (no GPU) the same repository is served on its
twin and honours the whole contract; the CUDA halves carry `requires_cuda`."""

import json
import re
import time
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import json_format

from gatta.client.models import served_device
from gatta.contract import CPU_CONFIG_NAME, CPU_GRAPH_FILE
from gatta.export import cpu_layout
from gatta.export.repository import read_config
from gatta.serving.devices import PlacementError, has_gpu, placement
from gatta.export.verify import ort_session

from helpers import make_checkpoint


def _as_served_json(config) -> dict:
    """A config as Triton's get_model_config returns it over HTTP."""
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def test_gpu_export_has_kind_gpu_and_an_otherwise_identical_cpu_twin(tiny_export):
    model = tiny_export[0] / "gatta"
    gpu, cpu = read_config(model / "config.pbtxt"), read_config(model / "configs" / f"{CPU_CONFIG_NAME}.pbtxt")
    assert [(g.kind, g.count) for g in gpu.instance_group] == [(gpu.instance_group[0].KIND_GPU, 1)]
    assert [(g.kind, g.count) for g in cpu.instance_group] == [(cpu.instance_group[0].KIND_CPU, 1)]
    del gpu.instance_group[:], cpu.instance_group[:]
    # the twin loads its own graph where ONNX Runtime here keeps the blocked-layout modulation
    # (export/cpu_layout.py; x86 with AVX2 or better), else the same one
    twin = model / "1" / CPU_GRAPH_FILE
    assert "graph" not in gpu.parameters
    assert cpu.parameters.pop("graph").string_value == CPU_GRAPH_FILE if twin.exists() else "graph" not in cpu.parameters
    assert gpu == cpu  # same tensors, batching and contract parameters
    assert not (tiny_export[0] / "gatta_preprocess" / "configs").exists()  # decoding stays on the CPU
    assert served_device(_as_served_json(read_config(model / "config.pbtxt"))) == \
        "GPU all (1 instance per GPU), ONNX Runtime CUDAExecutionProvider"


def test_the_cpu_twins_graph_is_the_same_model_in_the_blocked_layout(tiny_export, tmp_path):
    import onnx

    version = tiny_export[0] / "gatta" / "1"
    main = onnx.load(str(version / "model.onnx"))
    assert not any(cpu_layout.is_expansion(n) for n in main.graph.node)  # a GPU graph keeps its broadcasts
    if not (version / CPU_GRAPH_FILE).exists():
        assert not cpu_layout.blocked_in_onnxruntime(*_expanded_copy(main, tmp_path))
        pytest.skip("ONNX Runtime here has no blocked CPU kernels: the twin serves model.onnx")
    twin = onnx.load(str(version / CPU_GRAPH_FILE))
    assert sum(cpu_layout.is_expansion(n) for n in twin.graph.node) >= 1
    rng = np.random.default_rng(3)
    feeds = {"image": rng.random((3, 3, 16, 16), dtype=np.float32),
             "lesion_mask": rng.integers(0, 2, (3, 5)).astype(np.float32),
             "query_bias": rng.normal(size=(3, 8)).astype(np.float32)}
    a = ort_session(version / "model.onnx").run(None, feeds)
    b = ort_session(version / CPU_GRAPH_FILE).run(None, feeds)
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) <= 1e-5


def _expanded_copy(graph, folder):
    import copy

    import onnx

    graph = copy.deepcopy(graph)
    expanded = cpu_layout.modulate_in_blocked_layout(graph)
    onnx.save(graph, str(folder / "probe.onnx"))
    return folder / "probe.onnx", expanded


def test_placement_picks_the_cpu_twin_in_one_line_or_refuses(tiny_export, tmp_path):
    repo = tiny_export[0]
    none = placement(repo, {"python"}, "test", gpu=False)
    assert none.args == [f"--model-config-name={CPU_CONFIG_NAME}"]
    assert none.note == ("this host has no GPU: serving gatta on the CPU (configs/cpu.pbtxt, "
                         "ONNX Runtime CPUExecutionProvider)")
    no_cuda = placement(repo, {"python"}, "test", gpu=True, cuda=False)
    assert no_cuda.args == none.args and no_cuda.note.startswith("onnxruntime here has no CUDAExecutionProvider")
    assert placement(repo, {"python"}, "test", gpu=True, cuda=True).args == []  # config.pbtxt as exported
    from gatta.export.exporter import ExportOptions, export_checkpoint

    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=3, image_size=16)
    export_checkpoint(ckpt, ExportOptions(out=tmp_path / "native", flavour="onnxruntime", encoded=False))
    with pytest.raises(PlacementError) as info:
        placement(tmp_path / "native", {"python", "onnxruntime"}, "test", gpu=False)
    assert "\n" not in str(info.value) and "KIND_GPU" in str(info.value) and "no GPU" in str(info.value)


def test_export_says_which_providers_it_verified(tmp_path):
    from gatta.export.cli import main

    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=3, image_size=16)
    r = CliRunner().invoke(main, ["--ckpt", str(ckpt), "--out", str(tmp_path / "repo"), "--flavor", "python",
                                  "--device", "gpu", "--no-encoded"])
    assert r.exit_code == 0, r.output
    line = next(l for l in r.output.splitlines() if l.startswith("execution providers verified: "))
    import onnxruntime
    import torch

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers() and torch.cuda.is_available():
        assert line == "execution providers verified: CPUExecutionProvider, CUDAExecutionProvider"
    else:
        assert line.startswith("execution providers verified: CPUExecutionProvider (CUDA not verified: ")
    assert (tmp_path / "repo" / "gatta" / "configs" / "cpu.pbtxt").exists()


def test_the_shipped_shape_honours_the_contract_on_its_cpu_twin(triton, tiny_export):
    """Optional inputs default to ones/zeros, non-finite pixels are a 400 naming the input,
    the gatta_* metrics exist, and `gatta-client info` says where the model runs."""
    if has_gpu():
        pytest.skip("this host serves config.pbtxt on its GPU")
    import tritonclient.http as httpclient

    from gatta.client.cli import main as client

    client_ = httpclient.InferenceServerClient(triton.http_url)
    assert client_.get_model_config("gatta")["instance_group"][0]["kind"] == "KIND_CPU"  # the twin is served
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    image = httpclient.InferInput("image", [2, 3, 16, 16], "FP32")
    image.set_data_from_numpy(x)
    got = client_.infer("gatta", [image]).as_numpy("logits")
    session = ort_session(tiny_export[0] / "gatta" / "1" / "model.onnx")
    ref = session.run(["logits"], {"image": x, "lesion_mask": np.ones((2, 5), np.float32),
                                   "query_bias": np.zeros((2, 8), np.float32)})[0]
    assert np.abs(got - ref).max() <= 1e-5
    body = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 16, 16], "datatype": "FP32",
                                   "data": [0.5] * 767 + [1e39]}]}).encode()  # 1e39 overflows FP32: +inf
    request = urllib.request.Request(f"http://{triton.http_url}/v2/models/gatta/infer", data=body)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"] == "input 'image' contains NaN or infinite values"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the model flushes its metrics once a second
        metrics = urllib.request.urlopen(triton.metrics_url, timeout=10).read().decode()
        if 'gatta_rejected_requests_total{model="gatta",reason="non_finite"}' in metrics:
            break
        time.sleep(0.2)
    for family in ("gatta_images_total", "gatta_predictions_total", "gatta_top1_confidence_bucket",
                   "gatta_agreement_mean", "gatta_rejected_requests_total"):
        assert re.search(rf"^{family}{{", metrics, re.M), family
    r = CliRunner().invoke(client, ["info", "--url", triton.http_url])
    assert r.exit_code == 0 and "device      CPU (1 instance), ONNX Runtime CPUExecutionProvider\n" in r.output
    client_.close()


@pytest.mark.requires_cuda
def test_cuda_provider_serves_the_gpu_config(tiny_export, tmp_path):
    """On a GPU host with onnxruntime-gpu: config.pbtxt itself, CUDA provider, same results."""
    import tritonclient.http as httpclient

    from gatta.serving.launcher import start_server

    server = start_server(tiny_export[0], log_path=tmp_path / "gpu.log")
    try:
        assert server.placement_note == ""
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.get_model_config("gatta")["instance_group"][0]["kind"] == "KIND_GPU"
        assert "gatta_0_0: ONNX Runtime" in server.log_tail(500) and "CUDAExecutionProvider on GPU 0" in server.log_tail(500)
        x = np.random.default_rng(1).random((4, 3, 16, 16), dtype=np.float32)
        image = httpclient.InferInput("image", [4, 3, 16, 16], "FP32")
        image.set_data_from_numpy(x)
        got = client.infer("gatta", [image]).as_numpy("probs")
        ref = ort_session(tiny_export[0] / "gatta" / "1" / "model.onnx").run(["probs"], {"image": x})[0]
        assert np.abs(got - ref).max() <= 1e-4  # the export's FP32 tolerance
        client.close()
    finally:
        server.stop()


def test_two_onnxruntime_wheels_are_named_with_the_fix():
    from gatta.extras import onnxruntime_conflict

    assert onnxruntime_conflict(["numpy", "onnxruntime"]) is None
    assert onnxruntime_conflict(["onnxruntime_gpu"]) is None
    assert onnxruntime_conflict(["onnxruntime", "onnxruntime_gpu", "torch"]) == (
        "onnxruntime and onnxruntime-gpu are both installed and share the `onnxruntime` module; keep one: "
        "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")


def test_gpu_extra_is_declared_apart_from_the_cpu_wheel():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == ["onnxruntime-gpu>=1.19"]
    assert not any("onnxruntime-gpu" in d for name, deps in extras.items() if name != "gpu" for d in deps)
    assert "gpu" not in extras["all"][0]  # [all] stays installable: it would pull both wheels
