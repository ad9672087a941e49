"""gatta.client and gatta-client against the real tritonserver fixture."""

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gatta.client import ClientError, GattaClient, ImageError, load_image
from gatta.client.cli import main as client_cli
from gatta.export.verify import ort_session


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.png").write_text("hello, I am text")
    good = sorted(str(p) for p in folder.glob("img*.png"))
    return folder, good


def _client(triton, protocol="http", **kw):
    return GattaClient(triton.http_url if protocol == "http" else triton.grpc_url, protocol, **kw)


def test_reads_everything_from_the_server(triton, tiny_export):
    from gatta.model.checkpoint import load_checkpoint

    alphas = load_checkpoint(tiny_export[1])[0].head.alpha.tolist()
    with _client(triton) as c:
        assert c.info.image_size == 16 and c.info.d == 8 and c.info.flavour == "python"
        assert [l.name for l in c.info.layers] == ["conv1", "conv2", "conv3", "dense1", "logits"]
        assert c.info.labels == [f"class_{i}" for i in range(4)] and c.info.class_keys.shape == (4, 8)
        # the maps show alpha * gatta, so each layer's alpha travels with the model
        assert [l.alpha for l in c.info.layers] == pytest.approx(alphas, abs=1e-7)


def test_http_and_grpc_equal_and_match_onnx_runtime(triton, tiny_export, images):
    _, good = images
    with _client(triton, "http") as h, _client(triton, "grpc") as g:
        rh, rg = h.classify(good, top_k=3), g.classify(good, top_k=3)
    session = ort_session(tiny_export[0] / "gatta" / "1" / "model.onnx")
    x = np.stack([load_image(p, 16) for p in good])
    probs, q_avg, g1 = session.run(["probs", "q_avg", "gatta_conv1"], {"image": x})
    for i, (a, b) in enumerate(zip(rh, rg)):
        assert a.ok and a.label == b.label and a.index == int(probs[i].argmax())
        assert abs(a.prob - float(probs[i].max())) <= 1e-5 and abs(a.prob - b.prob) <= 1e-6
        assert np.abs(a.q_avg - q_avg[i]).max() <= 1e-5 and np.abs(a.gatta["conv1"] - g1[i]).max() <= 1e-5
        assert len(a.top_k) == 3 and a.top_k[0][0] == a.label


def test_lesion_and_prior_change_what_they_should(triton, tiny_export, images):
    _, good = images
    session = ort_session(tiny_export[0] / "gatta" / "1" / "model.onnx")
    x = np.stack([load_image(p, 16) for p in good])
    with _client(triton) as c:
        lesioned = c.classify(good, lesion=".....")
        base = session.run(["probs"], {"image": x, "lesion_mask": np.zeros((len(good), 5), np.float32)})[0]
        assert all(abs(r.prob - base[i].max()) <= 1e-5 for i, r in enumerate(lesioned))
        assert lesioned[0].lesion == "....."
        partial = c.classify(good, lesion="c.cdd")
        ref = session.run(["probs"], {"image": x, "lesion_mask": np.tile([1, 0, 1, 1, 1], (len(good), 1)).astype(np.float32)})[0]
        assert all(abs(r.prob - ref[i].max()) <= 1e-5 for i, r in enumerate(partial))
        plain, biased = c.classify(good), c.classify(good, prior="class_2")
        bias = c.query_bias("class_2")
        key = c.info.class_keys[2]
        assert abs(float(key @ bias) - c.prior_strength) < 1e-5  # moves class 2's agreement by the strength
        for p, b in zip(plain, biased):
            assert np.abs((b.q_avg - p.q_avg) - bias).max() <= 1e-5
        with pytest.raises(ClientError, match="unknown class"):
            c.classify(good, prior="zebra")
        # the python flavour gets the optional inputs only when they are not the defaults
        sent = lambda **kw: [t.name() for t in c.prepare(x, **kw).inputs]  # noqa: E731
        assert sent() == ["image"] and sent(lesion="cccdd") == ["image"]
        assert sent(lesion="c.cdd") == ["image", "lesion_mask"] and sent(prior="class_2") == ["image", "query_bias"]
        request = c.prepare(x, lesion="c.cdd", maps=False)  # encoded once, sent twice
        first, second = c.send(request), c.send(request)
        assert sorted(first) == ["logits", "probs"] and np.abs(first["probs"] - ref).max() <= 1e-5
        assert np.array_equal(first["probs"], second["probs"])


def test_bad_images_fail_alone(triton, images):
    folder, good = images
    items = [good[0], str(folder / "corrupt.jpg"), str(folder / "missing.png"), b"", good[1],
             np.full((16, 16, 3), np.nan, np.float32)]
    with _client(triton) as c:
        results = c.classify(items)
    assert [r.ok for r in results] == [True, False, False, False, True, False]
    assert "cannot decode" in results[1].error and "cannot read" in results[2].error
    assert "NaN" in results[5].error


def test_decompression_bomb_is_refused():
    buf = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buf, "PNG")
    with pytest.raises(ImageError, match="decompression bomb|limit"):
        load_image(buf.getvalue(), 16)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (20, 10), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 10))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=100)
    arr = load_image(buf.getvalue(), 16)
    assert arr[2, 2, 8] > 0.8 and arr[0, 13, 8] > 0.8  # blue on top, red below after rotation


def test_server_down_and_wrong_model_are_one_line(triton):
    for protocol in ("http", "grpc"):
        with pytest.raises(ClientError) as info:
            GattaClient("127.0.0.1:9", protocol, retries=1, backoff=0.01)
        message = str(info.value)
        assert "127.0.0.1:9" in message and f"({protocol})" in message and "tried 2 times" in message, message
        assert "\n" not in message
    with pytest.raises(ClientError, match="it has: gatta, gatta_encoded, gatta_preprocess"):
        GattaClient(triton.http_url, model="resnet")
    for protocol, url in (("http", triton.http_url), ("grpc", triton.grpc_url)):  # served, but no classifier
        with pytest.raises(ClientError, match=r"^model 'gatta_encoded' at .* is not a gattanet export \(no 'gatta' "):
            GattaClient(url, protocol, model="gatta_encoded")


def test_retry_decision_is_by_error_type_not_text():
    import http.client

    from tritonclient.utils import InferenceServerException

    from gatta.client.client import is_unavailable

    assert is_unavailable(ConnectionRefusedError(111, "Connection refused"))
    assert is_unavailable(TimeoutError()) and is_unavailable(BrokenPipeError())
    assert is_unavailable(http.client.HTTPException("connection closed."))  # geventhttpclient mid-response
    assert is_unavailable(InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE"))
    # an answer from the server is final, whatever its text says
    assert not is_unavailable(InferenceServerException("UNAVAILABLE: Connection refused", status="400"))
    assert not is_unavailable(InferenceServerException("x", status="StatusCode.INVALID_ARGUMENT"))
    assert not is_unavailable(ValueError("Connection refused"))


def _cli(*args):
    return CliRunner().invoke(client_cli, [str(a) for a in args])


def test_cli_directory_with_corrupt_files(triton, images, tmp_path):
    folder, good = images
    r = _cli("classify", folder, "--url", triton.http_url, "--json", "--maps", tmp_path / "maps")
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    assert r.exit_code == 2 and len(lines) == 8
    assert sum("error" not in l for l in lines) == 6
    assert "6 classified, 2 failed" in r.stderr
    assert all(set(l) >= {"path", "label", "index", "prob", "top_k"} for l in lines if "error" not in l)
    pngs = sorted((tmp_path / "maps").glob("*.png"))
    assert [p.stem for p in pngs] == [f"img{i}" for i in range(6)]
    w, h = Image.open(pngs[0]).size
    assert w > 6 * 128 and h > 128  # image + 5 layer panels of 128 px + the colour bar
    with _client(triton) as c:
        served = c.classify([good[0]])[0].gatta
    raw = np.load(tmp_path / "maps" / "img0.npz")  # the raw maps for programs, as served
    assert all(np.abs(raw[f"gatta_{name}"] - g).max() <= 1e-6 for name, g in served.items())


def test_cli_resume_classifies_each_image_exactly_once(triton, images, tmp_path):
    folder, good = images
    out = tmp_path / "results.jsonl"
    r = _cli("classify", *good[:3], "--url", triton.http_url, "--output", out)
    assert r.exit_code == 0
    with open(out, "a") as fh:
        fh.write('{"path": "' + good[3] + '", "lab')  # a line cut short by a crash
    r = _cli("classify", *good, "--url", triton.http_url, "--output", out, "--resume")
    assert r.exit_code == 0 and "3 already" in r.stderr
    records = []
    for line in out.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    assert sorted(rec["path"] for rec in records) == sorted(good)


def test_cli_info_health_bench(triton):
    r = _cli("info", "--url", triton.http_url, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["layers"][0]["name"] == "conv1"
    r = _cli("health", "--url", triton.grpc_url, "--protocol", "grpc")
    assert r.exit_code == 0 and r.output.strip() == "live=yes ready=yes model_ready=yes"
    r = _cli("bench", "--url", triton.http_url, "--concurrency", "2", "--requests", "20", "--json")
    report = json.loads(r.output)
    assert report["failures"] == 0 and report["requests"] == 20 and report["p99_ms"] >= report["p50_ms"] > 0
    r = _cli("classify", "x.png", "--url", "127.0.0.1:9")
    assert r.exit_code == 1 and "cannot reach Triton at 127.0.0.1:9" in r.output
    r = _cli("classify", "x.png", "--url", triton.http_url, "--lesion", "cc")
    assert r.exit_code == 1 and "'cc' has 2 characters" in r.output


def test_client_metrics_are_exposed(triton, images):
    import urllib.request

    from gatta.client.metrics import serve_metrics
    from gatta.serving.launcher import free_port

    port = free_port()
    serve_metrics(port)
    _, good = images
    with _client(triton) as c:
        c.classify(good[:2] + ["/nonexistent.png"])
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    count = [l for l in text.splitlines() if l.startswith('gatta_client_request_seconds_count{protocol="http"}')]
    assert count and float(count[0].split()[-1]) >= 1
    assert 'gatta_client_errors_total{kind="image"}' in text
    assert "gatta_client_predictions_total{label=" in text
