"""No answer is silently wrong: finite but meaningless inputs (pixels in 0..255, a query_bias of
1e30, a lesion mask of 2) are refused by the real server over HTTP and gRPC, by the encoded-image
pipeline and by the client before it sends, each in the contract's words and counted by reason;
outputs that come out NaN or Inf anyway are refused per request while the rest of the dynamic
batch is served."""

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.utils import InferenceServerException

from gatta import contract
from gatta.client import GattaClient
from gatta.client.inputs import InputError
from gatta.bounds import INPUT_BOUNDS, range_error
from gatta.contract import CPU_CONFIG_NAME, ModelMetadata
from gatta.export.repository import read_config
from gatta.export.verify import ort_session
from gatta.serving.launcher import start_server

ROOT = Path(__file__).resolve().parents[1]
STATUS = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}


def _module(protocol):
    return httpclient if protocol == "http" else grpcclient


def _client(server, protocol, **kw):
    return _module(protocol).InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url, **kw)


def _inputs(module, **arrays):
    out = []
    for name, arr in arrays.items():
        t = module.InferInput(name, list(arr.shape), "BYTES" if arr.dtype == object else "FP32")
        t.set_data_from_numpy(arr)
        out.append(t)
    return out


def _served(server) -> ModelMetadata:
    client = httpclient.InferenceServerClient(server.http_url)
    meta = ModelMetadata.from_model_config(client.get_model_config("gatta"))
    client.close()
    return meta


def _bad_cases(meta: ModelMetadata) -> dict:
    """label -> (feeds, the input at fault, reason label); shapes from the served model."""
    rng = np.random.default_rng(0)
    size, layers = meta.image_size, len(meta.layers)
    image = rng.random((1, 3, size, size), dtype=np.float32)
    return {
        "pixels 0..255": ({"image": np.round(image * 255)}, "image", "image_range"),
        "pixels at 3e38": ({"image": np.full_like(image, 3e38)}, "image", "image_range"),
        "mean/std normalised": ({"image": (image - 0.45) / 0.225}, "image", "image_range"),
        "query_bias 1e30": ({"image": image, "query_bias": np.full((1, meta.d), 1e30, np.float32)}, "query_bias",
                            "query_bias_range"),
        "query_bias -500": ({"image": image, "query_bias": np.full((1, meta.d), -500, np.float32)}, "query_bias",
                            "query_bias_range"),
        "lesion_mask 2": ({"image": image, "lesion_mask": np.full((1, layers), 2, np.float32)}, "lesion_mask",
                          "lesion_mask_range"),
        "lesion_mask -1": ({"image": image, "lesion_mask": np.full((1, layers), -1, np.float32)}, "lesion_mask",
                           "lesion_mask_range"),
    }


def _metrics(server) -> str:
    return urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()


def _rejected(text: str) -> dict[str, float]:
    """reason -> gatta_rejected_requests_total of model gatta."""
    out = {}
    for line in text.splitlines():
        if line.startswith('gatta_rejected_requests_total{model="gatta",reason="'):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def _settled_rejections(server, quiet: float = 2.5, timeout: float = 30) -> dict[str, float]:
    """The counters once they have not moved for 2.5 of the model's 1 s flush intervals."""
    now, since, deadline = _rejected(_metrics(server)), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"rejection counters kept changing for {timeout} s"
        time.sleep(0.1)
        again = _rejected(_metrics(server))
        if again != now:
            now, since = again, time.monotonic()
    return now


def _wait_for_rejections(server, expected: dict[str, float], timeout: float = 10) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        got = _rejected(_metrics(server))
        if all(got.get(r, 0) >= n for r, n in expected.items()) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def _reference(repo, **feeds):
    return ort_session(repo / "gatta" / "1" / "model.onnx").run(["probs"], feeds)[0]


def test_exported_configs_carry_the_contracts_bounds(tiny_export):
    repo = tiny_export[0]
    expected = {name: b.to_dict() for name, b in INPUT_BOUNDS.items()}
    for path in (repo / "gatta" / "config.pbtxt", repo / "gatta" / "configs" / f"{CPU_CONFIG_NAME}.pbtxt",
                 repo / "gatta_preprocess" / "config.pbtxt"):
        params = {k: v.string_value for k, v in read_config(path).parameters.items()}
        assert json.loads(params[contract.PARAM_BOUNDS]) == expected, path


def test_contract_names_the_input_the_range_and_the_likely_cause():
    image = np.zeros((1, 3, 4, 4), np.float32)
    assert range_error("image", image + 1.15) is None  # resampling overshoot is tolerated
    assert range_error("image", image - 0.15) is None
    assert range_error("image", np.where(image == 0, 255.0, 0).astype(np.float32)) == \
        "input 'image' max 255.0: pixels are expected in [0, 1]; divide by 255"
    assert range_error("image", image + 1.5).endswith("clip them to [0, 1] (bicubic and Lanczos resizing overshoot)")
    assert "do not normalise them" in range_error("image", image - 2.1)
    assert range_error("image", image + 3e38).startswith("input 'image' max 3e+38: pixels are expected in [0, 1]")
    assert range_error("image", np.full(3, np.nan)) == "input 'image' contains NaN or infinite values"
    assert range_error("query_bias", np.full(8, 100.0)) is None and range_error("lesion_mask", [0, 0.5, 1]) is None
    assert range_error("query_bias", np.full(8, 1e30, np.float32)).startswith(
        "input 'query_bias' max 1e+30: query_bias entries are expected in [-100, 100]")
    assert range_error("lesion_mask", [1, 2]).startswith("input 'lesion_mask' max 2.0: lesion_mask entries are expected in [0, 1]")
    assert all("\n" not in range_error("image", image + v) for v in (5, -5, 1e30))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_values_are_refused_in_the_contracts_words_then_a_good_request_is_served(triton, tiny_export, protocol):
    meta = _served(triton)
    module, client = _module(protocol), _client(triton, protocol)
    good = np.random.default_rng(1).random((2, 3, meta.image_size, meta.image_size), dtype=np.float32)
    cases = _bad_cases(meta)
    before = _settled_rejections(triton)
    for label, (feeds, name, _) in cases.items():
        with pytest.raises(InferenceServerException) as info:
            client.infer("gatta", _inputs(module, **feeds))
        assert range_error(name, feeds[name]) in str(info.value), (label, str(info.value))
        assert info.value.status() == STATUS[protocol], (label, info.value.status())
        # the next request is served, and correctly
        probs = client.infer("gatta", _inputs(module, image=good)).as_numpy("probs")
        assert np.abs(probs - _reference(tiny_export[0], image=good)).max() <= 1e-5, label
    client.close()
    wanted = {}
    for _, _, reason in cases.values():
        wanted[reason] = wanted.get(reason, 0) + 1
    after = _wait_for_rejections(triton, {r: before.get(r, 0) + n for r, n in wanted.items()})
    assert {r: after.get(r, 0) - before.get(r, 0) for r in wanted} == wanted
    assert {"shape", "non_finite", "non_finite_output"} <= set(after)  # every reason is exported, at 0 or more


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_encoded_pipeline_refuses_bad_optional_inputs(triton, protocol):
    meta = _served(triton)
    module, client = _module(protocol), _client(triton, protocol)
    blob = np.array([[open(ROOT / "samples" / "cat.jpg", "rb").read()]], dtype=object)
    for name, value in (("query_bias", np.full((1, meta.d), 1e30, np.float32)),
                        ("lesion_mask", np.full((1, len(meta.layers)), 2, np.float32))):
        with pytest.raises(InferenceServerException) as info:
            client.infer("gatta_encoded", _inputs(module, image_bytes=blob, **{name: value}))
        assert range_error(name, value) in str(info.value), str(info.value)
        assert info.value.status() == STATUS[protocol]
    probs = client.infer("gatta_encoded", _inputs(module, image_bytes=blob)).as_numpy("probs")
    assert probs.shape == (1, len(meta.labels)) and abs(float(probs.sum()) - 1) < 1e-5
    client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_client_refuses_before_sending_in_the_servers_words(triton, protocol):
    stats = httpclient.InferenceServerClient(triton.http_url)

    def requests_seen() -> int:
        s = stats.get_inference_statistics("gatta")["model_stats"][0]["inference_stats"]
        return int(s["success"]["count"]) + int(s["fail"]["count"])

    def settled_count(at_least: int = 0) -> int:
        """The count once it is at least ``at_least`` and two readings 0.5 s apart agree: it can
        lag a reply (seen once: a successful request not yet counted when its response had
        arrived), here and for the requests of earlier tests on the same server."""
        deadline = time.monotonic() + 10
        last = requests_seen()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = requests_seen()
            if now == last and now >= at_least:
                return now
            last = now
        return last

    with GattaClient(triton.http_url if protocol == "http" else triton.grpc_url, protocol, model="gatta") as client:
        meta = client.info
        seen = settled_count()
        for label, (feeds, name, _) in _bad_cases(meta).items():
            if name == "query_bias":  # the client makes its bias from a prior, below
                continue
            lesion = [float(v) for v in feeds["lesion_mask"][0]] if "lesion_mask" in feeds else None
            with pytest.raises(InputError) as info:
                client.infer(feeds["image"], lesion=lesion)
            assert str(info.value) == range_error(name, feeds[name]), label
        image = _bad_cases(meta)["query_bias 1e30"][0]["image"][0]
        with pytest.raises(InputError) as info:  # a prior far too strong
            client.classify([image], prior=0, prior_strength=1e6)
        assert str(info.value) == range_error("query_bias", client.query_bias(0, 1e6))
        # a float array of 0..255 pixels is one bad image among good ones, said the server's way
        size = meta.image_size
        good = np.random.default_rng(2).random((size, size, 3), dtype=np.float32)
        results = client.classify([good, good * 255, good])
        assert results[1].error == range_error("image", good * 255)
        assert results[1].error.endswith(": pixels are expected in [0, 1]; divide by 255")
        assert results[0].error is None and results[2].error is None
        assert settled_count(at_least=seen + 1) == seen + 1  # only the good images' request went out
    stats.close()


def _repository_without_bounds(tiny_export, root):
    """The classifier as a repository exported before bounds existed: only NaN/Inf inputs and
    non-finite outputs are refused, so out-of-range values reach the model. Requests wait up
    to 0.3 s for a batch."""
    repo = root / "repo"
    shutil.copytree(tiny_export[0] / "gatta", repo / "gatta")
    for path in (repo / "gatta" / "config.pbtxt", repo / "gatta" / "configs" / f"{CPU_CONFIG_NAME}.pbtxt"):
        config = read_config(path)
        del config.parameters[contract.PARAM_BOUNDS]
        # a long batching window: the burst of requests below shares batches however fast the
        # machine is (on a quiet one each request could otherwise run alone)
        config.dynamic_batching.max_queue_delay_microseconds = 300_000
        path.write_text(text_format.MessageToString(config))
    return repo


def test_non_finite_outputs_are_refused_alone_and_the_rest_of_the_batch_is_served(tiny_export, tmp_path):
    repo = _repository_without_bounds(tiny_export, tmp_path)
    server = start_server(repo, log_path=tmp_path / "triton.log", wait=180)
    try:
        meta = _served(server)
        client = httpclient.InferenceServerClient(server.http_url, concurrency=24)
        rng = np.random.default_rng(3)
        size = meta.image_size
        x = rng.random((24, 1, 3, size, size), dtype=np.float32)
        overflow = np.full((1, meta.d), 1e30, np.float32)
        # every fourth request overflows through its query_bias, one through its pixels
        feeds = [{"image": x[i], "query_bias": overflow} if i % 4 == 1 else {"image": x[i]} for i in range(24)]
        feeds[6] = {"image": np.full_like(x[6], 3e38)}
        before = _settled_rejections(server)
        pending = [client.async_infer("gatta", _inputs(httpclient, **f)) for f in feeds]
        for i, request in enumerate(pending):
            if i % 4 == 1:
                with pytest.raises(InferenceServerException) as info:
                    request.get_result()
                assert info.value.status() == "400", i
                assert "the outputs of this request are not finite: input 'query_bias' (largest magnitude 1e+30)" \
                    in str(info.value), str(info.value)
            elif i == 6:
                with pytest.raises(InferenceServerException) as info:
                    request.get_result()
                assert info.value.status() == "500"
                assert "not finite although its inputs were accepted (image values in [3e+38, 3e+38])" in str(info.value)
            else:
                probs = request.get_result().as_numpy("probs")
                assert np.abs(probs - _reference(tiny_export[0], **feeds[i])).max() <= 1e-5, i
        stats = client.get_inference_statistics("gatta")["model_stats"][0]
        assert stats["execution_count"] < stats["inference_count"]  # bad and good shared batches
        after = _wait_for_rejections(server, {"non_finite_output": before.get("non_finite_output", 0) + 7})
        assert after["non_finite_output"] - before.get("non_finite_output", 0) == 7
        assert "image_range" not in after  # no bounds in this config, so no range reasons
        client.close()
    finally:
        server.stop()


def test_the_viewer_answers_a_prior_outside_the_range_with_a_400(triton):
    from gatta.client.viewer import Viewer

    blob = (ROOT / "samples" / "cat.jpg").read_bytes()
    with GattaClient(triton.http_url, model="gatta") as client, Viewer(client) as viewer:
        label = client.info.labels[1]
        request = urllib.request.Request(f"{viewer.url}/api/classify?prior={label}&strength=1e6", data=blob,
                                         method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=60)
        assert info.value.code == 400
        assert json.loads(info.value.read())["error"] == range_error("query_bias", client.query_bias(1, 1e6))
        request = urllib.request.Request(f"{viewer.url}/api/classify?prior={label}&strength=0.3", data=blob,
                                         method="POST")
        assert urllib.request.urlopen(request, timeout=60).status == 200
