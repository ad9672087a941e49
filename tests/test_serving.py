"""A real tritonserver serving the python flavour: parity, endpoints, metrics, bad requests,
mixed lesion masks in one dynamic batch, encoded images, graceful SIGTERM."""

import io
import json
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from gatta.export.verify import ort_session
from gatta.serving.cli import check_loadable
from gatta.serving.devices import has_gpu
from gatta.serving.launcher import LaunchError, ServerBinary, find_server, start_server

OUTPUTS = ["logits", "probs", "q_avg", "gatta_conv1", "gatta_conv2", "gatta_conv3", "gatta_dense1", "gatta_logits"]


def _inputs(module, **arrays):
    out = []
    for name, arr in arrays.items():
        t = module.InferInput(name, list(arr.shape), "FP32" if arr.dtype == np.float32 else "FP64")
        t.set_data_from_numpy(arr)
        out.append(t)
    return out


def _reference(repo, **feeds):
    session = ort_session(repo / "gatta" / "1" / "model.onnx")
    return dict(zip(OUTPUTS, session.run(OUTPUTS, feeds)))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_inference_matches_in_process_onnx_runtime(triton, tiny_export, protocol):
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(triton.http_url if protocol == "http" else triton.grpc_url)
    x = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 1, 1], [0, 0, 0, 0, 0]], np.float32)
    result = client.infer("gatta", _inputs(module, image=x, lesion_mask=mask))
    ref = _reference(tiny_export[0], image=x, lesion_mask=mask)
    for name in OUTPUTS:
        got = result.as_numpy(name)
        assert got is not None and got.size > 0 and got.shape == ref[name].shape, name  # never empty
        assert np.abs(got - ref[name]).max() <= 1e-5, name
    # only what a request names comes back
    result = client.infer("gatta", _inputs(module, image=x), outputs=[module.InferRequestedOutput("probs")])
    assert result.as_numpy("logits") is None
    assert np.abs(result.as_numpy("probs") - _reference(tiny_export[0], image=x)["probs"]).max() <= 1e-5
    client.close()


def test_health_metadata_and_config(triton):
    from gatta.export.repository import export_cores

    client = httpclient.InferenceServerClient(triton.http_url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("gatta")
    meta = client.get_model_metadata("gatta")
    assert [i["name"] for i in meta["inputs"]] == ["image", "lesion_mask", "query_bias"]
    assert [o["name"] for o in meta["outputs"]] == OUTPUTS
    assert meta["inputs"][0]["shape"] == [-1, 3, 16, 16]
    config = client.get_model_config("gatta")
    assert json.loads(config["parameters"]["gatta"]["string_value"])["flavour"] == "python"
    # intra_op_threads "auto": the instance took this host's cores (one instance)
    assert config["parameters"]["intra_op_threads"]["string_value"] == "auto"
    assert f"CPUExecutionProvider, {export_cores()} intra-op thread(s)" in triton.log_path.read_text()
    # model management is off and restricted: no remote loading
    with pytest.raises(InferenceServerException):
        client.load_model("gatta")
    client.close()


def test_bad_requests_get_clear_errors_and_server_stays_ready(triton):
    client = httpclient.InferenceServerClient(triton.http_url)
    good = np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)
    cases = {
        "wrong shape": (_inputs(httpclient, image=np.zeros((1, 3, 8, 8), np.float32)), "unexpected shape"),
        "wrong dtype": (_inputs(httpclient, image=good.astype(np.float64)), "data-type"),
        "over max batch": (_inputs(httpclient, image=np.zeros((9, 3, 16, 16), np.float32)), "batch-size must be <= 8"),
        "non-finite": (_inputs(httpclient, image=np.where(good > 0.5, np.inf, good).astype(np.float32)), "NaN or infinite"),
        "bad mask shape": (_inputs(httpclient, image=good, lesion_mask=np.ones((1, 3), np.float32)), "lesion_mask"),
    }
    for label, (inputs, expected) in cases.items():
        with pytest.raises(InferenceServerException) as info:
            client.infer("gatta", inputs)
        assert expected in str(info.value), (label, str(info.value))
    with pytest.raises(InferenceServerException, match="unknown model|not found"):
        client.infer("no_such_model", _inputs(httpclient, image=good))
    assert client.is_server_ready() and client.is_model_ready("gatta")
    assert client.infer("gatta", _inputs(httpclient, image=good)).as_numpy("probs").shape == (1, 4)
    client.close()


def test_different_masks_in_one_dynamic_batch(triton, tiny_export):
    """Concurrent requests with their own masks are batched together server-side; each must
    still get its own result."""
    client = httpclient.InferenceServerClient(triton.http_url, concurrency=32)
    rng = np.random.default_rng(2)
    x = rng.random((32, 1, 3, 16, 16), dtype=np.float32)
    masks = rng.integers(0, 2, (32, 1, 5)).astype(np.float32)
    # every third request leaves the mask out (the full model), mixed into batches with masks
    feeds = [{"image": x[i]} if i % 3 == 0 else {"image": x[i], "lesion_mask": masks[i]} for i in range(32)]
    pending = [client.async_infer("gatta", _inputs(httpclient, **f)) for f in feeds]
    for i, request in enumerate(pending):
        got = request.get_result().as_numpy("logits")
        ref = _reference(tiny_export[0], **feeds[i])["logits"]
        assert np.abs(got - ref).max() <= 1e-5, i
    stats = client.get_inference_statistics("gatta")["model_stats"][0]
    assert stats["execution_count"] < stats["inference_count"]  # some requests were batched
    client.close()


def test_encoded_images_through_the_ensemble(triton, tiny_export):
    client = httpclient.InferenceServerClient(triton.http_url, concurrency=4)
    rng = np.random.default_rng(3)
    pending, expected = [], []
    for i, fmt in enumerate(["PNG", "JPEG", "PNG", "BMP"]):
        pixels = rng.integers(0, 255, (16 + 8 * i, 16 + 8 * i, 3), dtype=np.uint8)  # varied byte lengths, resized
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, fmt)
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize((16, 16), Image.BILINEAR),
                             np.float32).transpose(2, 0, 1)[None] / 255
        expected.append(_reference(tiny_export[0], image=decoded)["probs"])
        t = httpclient.InferInput("image_bytes", [1, 1], "BYTES")
        t.set_data_from_numpy(np.array([[buf.getvalue()]], dtype=object))
        pending.append(client.async_infer("gatta_encoded", [t]))
    for request, ref in zip(pending, expected):
        assert np.abs(request.get_result().as_numpy("probs") - ref).max() <= 1e-5
    bad = httpclient.InferInput("image_bytes", [1, 1], "BYTES")
    bad.set_data_from_numpy(np.array([[b"\xff\xd8 truncated jpeg"]], dtype=object))
    with pytest.raises(InferenceServerException, match="cannot decode image"):
        client.infer("gatta_encoded", [bad])
    assert client.is_server_ready()
    client.close()


def _metrics(server) -> str:
    return urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()


def test_metrics_include_model_counters_and_custom_ones(triton):
    client = httpclient.InferenceServerClient(triton.http_url)
    x = np.random.default_rng(4).random((5, 3, 16, 16), dtype=np.float32)
    before = _settled_metrics(triton, 'gatta_images_total{model="gatta"}')
    images_before = _value(before, 'gatta_images_total{model="gatta"}')
    client.infer("gatta", _inputs(httpclient, image=x, lesion_mask=np.zeros((5, 5), np.float32)))
    deadline = time.monotonic() + 10  # the model flushes its metrics once a second
    while time.monotonic() < deadline:
        after = _metrics(triton)
        if _value(after, 'gatta_images_total{model="gatta"}') >= images_before + 5:
            break
        time.sleep(0.2)
    assert _value(after, 'gatta_images_total{model="gatta"}') == images_before + 5
    assert _value(after, 'gatta_lesioned_requests_total{model="gatta"}') >= 1
    assert 'nv_inference_count{model="gatta",version="1"}' in after
    assert sum(_value(after, l.split(" ")[0]) for l in after.splitlines()
               if l.startswith("gatta_predictions_total{")) >= 5
    assert 'gatta_agreement_mean{layer="conv1",model="gatta"}' in after
    assert 'gatta_top1_confidence_bucket{le="+Inf",model="gatta"}' in after
    client.close()


def _settled_metrics(server, key: str, quiet: float = 2.5, timeout: float = 30) -> str:
    """The metrics once ``key`` has not moved for 2.5 flush intervals of the model (1 s each),
    so increments still pending from earlier requests cannot land after the baseline, even from
    a flush that a busy host delays."""
    text = _metrics(server)
    since, deadline = time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"{key} kept changing for {timeout} s"
        time.sleep(0.1)
        now = _metrics(server)
        if _value(now, key) != _value(text, key):
            since = time.monotonic()
        text = now
    return text


def _value(text: str, key: str) -> float:
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sigterm_lets_in_flight_requests_finish(tiny_export, tmp_path):
    # Triton's own SIGTERM path, not the launcher's drain: it waits for the HTTP connections
    # (open until the client has read all 24 results), then unloads in the time left of
    # --exit-timeout-secs. The launcher's 3 s left a slow host too little to unload the stubs
    # (exit status 1), so this server gets 30 (the last --exit-timeout-secs wins).
    server = start_server(tiny_export[0], log_path=tmp_path / "t.log", wait=180,
                          extra_args=["--exit-timeout-secs=30"])
    try:
        client = httpclient.InferenceServerClient(server.http_url, concurrency=8)
        x = np.random.default_rng(5).random((8, 3, 16, 16), dtype=np.float32)
        stats = httpclient.InferenceServerClient(server.http_url)

        def served() -> int:
            return stats.get_inference_statistics("gatta")["model_stats"][0]["inference_stats"]["success"]["count"]

        pending = [client.async_infer("gatta", _inputs(httpclient, image=x)) for _ in range(24)]
        deadline = time.monotonic() + 60
        while (done := served()) == 0 and time.monotonic() < deadline:  # the server is busy with them
            pass
        server.process.send_signal(signal.SIGTERM)
        stats.close()
        assert 1 <= done < 24, f"{done} of 24 requests finished before SIGTERM: nothing was left in flight"
        results = [p.get_result().as_numpy("probs") for p in pending]
        client.close()
        assert len(results) == 24 and all(r.shape == (8, 4) for r in results)
        assert server.process.wait(60) == 0, (tmp_path / "t.log").read_text()[-2000:]
    finally:
        if server.process.poll() is None:
            server.stop(drain_timeout=None)


def test_native_flavour_refused_here_with_one_line(tmp_path):
    from gatta.export.exporter import ExportOptions, export_checkpoint

    from helpers import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=3, image_size=16)
    export_checkpoint(ckpt, ExportOptions(out=tmp_path / "repo", flavour="onnxruntime", encoded=False))
    binary = find_server()
    if "onnxruntime" in binary.backends:
        pytest.skip("this tritonserver has the onnxruntime backend")
    with pytest.raises(LaunchError) as info:
        check_loadable(tmp_path / "repo", binary)
    message = str(info.value)
    assert "\n" not in message and "onnxruntime backend" in message and "--flavor python" in message


def test_missing_repository_is_one_line(tmp_path):
    with pytest.raises(LaunchError, match="does not exist"):
        start_server(tmp_path / "nowhere")


def test_exporter_code_is_part_of_the_cache_key(tmp_path):
    import shutil

    import gatta.export
    from gatta.serving.default_model import source_digest

    code = tmp_path / "export"
    shutil.copytree(Path(gatta.export.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__"))
    before = source_digest(code)
    assert before == source_digest(Path(gatta.export.__file__).parent)
    with open(code / "signature.py", "a") as f:
        f.write("# changed\n")
    assert source_digest(code) != before


def test_default_repository_is_exported_once_and_again_when_the_checkpoint_changes(tmp_path, monkeypatch):
    from gatta.serving.default_model import default_repository

    from helpers import make_checkpoint

    monkeypatch.setenv("GATTA_CACHE", str(tmp_path / "cache"))
    ckpt = make_checkpoint(tmp_path / "m.pt", num_classes=3, image_size=16)
    messages = []
    first = default_repository(ckpt, echo=messages.append)
    again = default_repository(ckpt, echo=messages.append)
    assert first == again and len(messages) == 1 and (first / "gatta" / "1" / "model.onnx").exists()
    make_checkpoint(ckpt, num_classes=3, image_size=16, seed=1)  # new weights, same path
    changed = default_repository(ckpt, echo=messages.append)
    assert changed != first and len(messages) == 2


def test_check_loadable_reads_configs_with_tritons_schema(tmp_path):
    backends = tmp_path / "backends"
    (backends / "python").mkdir(parents=True)
    binary = ServerBinary(tmp_path / "tritonserver", backends, origin="test")
    model = tmp_path / "repo" / "m"
    model.mkdir(parents=True)
    config = model / "config.pbtxt"
    # a comment mentioning KIND_GPU and another backend must not matter, only the parsed fields
    config.write_text('# was: backend: "onnxruntime" with KIND_GPU\nname: "m"\nbackend: "python"\n'
                      "instance_group { kind: KIND_CPU }\n")
    check_loadable(tmp_path / "repo", binary)
    config.write_text('name: "m"\nbackend: "python"\ninstance_group { kind: KIND_GPU }\n')
    if not has_gpu():
        with pytest.raises(LaunchError, match="configured for a GPU"):
            check_loadable(tmp_path / "repo", binary)
    config.write_text('name: "m"\nbackend: "python"\ninstance_group { kind: KIND_TPU }\n')
    with pytest.raises(LaunchError, match="m/config.pbtxt is not a valid Triton model config") as info:
        check_loadable(tmp_path / "repo", binary)
    assert "\n" not in str(info.value)
