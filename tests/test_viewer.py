"""The maps renderer, and `gatta-client view` (its API and the page in a real Chromium) against
the real tritonserver fixture."""

import base64
import http.client
import io
import json
import shutil
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from gatta.client import GattaClient
from gatta.client import maps
from gatta.client.results import Classification, LayerInfo, ModelInfo
from gatta.client.viewer import Viewer

from conftest import BETA_CLASSES

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]


def _toy_result():
    layers = [LayerInfo("conv1", "conv", [8, 8], 2.0), LayerInfo("conv2", "conv", [4, 4], -1.0),
              LayerInfo("logits", "dense", [3], 1.0)]
    info = ModelInfo(image_size=8, d=4, labels=["a", "b", "c"], layers=layers, name="toy", flavour="python")
    conv1 = np.zeros((8, 8), np.float32)
    conv1[:4] = 0.5  # alpha 2: top half +1, the largest |alpha * gatta| of all conv maps
    conv2 = np.full((4, 4), 0.5, np.float32)  # alpha -1: -0.5 everywhere
    result = Classification("x", label="b", index=1, prob=0.7, q_avg=np.arange(4, dtype=np.float32),
                            gatta={"conv1": conv1, "conv2": conv2, "logits": np.array([0.1, -0.2, 0.3], np.float32)})
    return result, info


def test_colour_scale_is_symmetric_rdbu():
    lut = maps.colourise(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), 1.0)
    assert lut[1].tolist() == [5, 48, 97] and lut[3].tolist() == [103, 0, 31]  # ends of RdBu_r
    assert (lut[0] == lut[1]).all() and (lut[4] == lut[3]).all()  # clipped beyond the limit
    assert np.abs(lut[2].astype(int) - 247).max() <= 4  # zero is (near) white


def test_figure_shows_alpha_times_gatta_on_one_shared_scale(tmp_path):
    result, info = _toy_result()
    assert maps.shared_limit(result, info) == pytest.approx(1.0)
    image = np.full((3, 8, 8), 0.5, np.float32)
    png = maps.maps_figure(result, info, image, tmp_path / "x.png")
    fig = np.asarray(Image.open(png).convert("RGB")).astype(int)
    P, pad, title = maps.PANEL, 8, 16
    grey = 128 * (1 - maps.OVERLAY)

    def pixel(panel, fx, fy):  # a pixel at fractions of panel `panel` (0 = the input image)
        return fig[title + int(fy * P), pad + panel * (P + pad) + int(fx * P)]

    top, bottom = pixel(1, 0.5, 0.25), pixel(1, 0.5, 0.75)
    assert np.abs(top - (maps.OVERLAY * np.array([103, 0, 31]) + grey)).max() <= 2  # +1 = the scale's red end
    assert np.abs(bottom - (maps.OVERLAY * 247 + grey)).max() <= 4  # 0 = white
    blue = maps.OVERLAY * maps.colourise(np.array([-0.5]), 1.0)[0] + grey  # conv2: alpha -1 turns +0.5 into -0.5
    assert np.abs(pixel(2, 0.5, 0.5) - blue).max() <= 2
    npz = np.load(tmp_path / "x.npz")
    assert sorted(npz.files) == ["alpha_conv1", "alpha_conv2", "alpha_logits", "gatta_conv1", "gatta_conv2",
                                 "gatta_logits", "q_avg"]
    assert np.array_equal(npz["gatta_conv1"], result.gatta["conv1"]) and float(npz["alpha_conv2"]) == -1.0


@pytest.fixture(scope="module")
def viewer(triton):
    client = GattaClient(triton.http_url)
    with Viewer(client) as v:
        yield v, client
    client.close()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / "good.png")
    (folder / "notes.txt").write_text("hello, I am text")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(200))
    Image.new("L", (9000, 9000)).save(folder / "huge.png")  # 81 Mpixel in a ~80 kB file
    return folder


def _post(viewer_url, data: bytes, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    request = urllib.request.Request(f"{viewer_url}/api/classify?{query}", data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_api_matches_the_client_and_refuses_bad_input_in_one_line(viewer, pictures, triton):
    v, client = viewer
    good = (pictures / "good.png").read_bytes()
    status, data = _post(v.url, good, lesion="c.cdd")
    ref, off = client.classify([good], lesion="c.cdd")[0], client.classify([good], lesion=".....")[0]
    assert status == 200 and data["on"]["label"] == ref.label and data["lesion"] == "c.cdd"
    assert abs(data["on"]["prob"] - ref.prob) <= 1e-6 and abs(data["off"]["prob"] - off.prob) <= 1e-6
    assert [l["name"] for l in data["layers"]] == ["conv1", "conv2", "conv3", "dense1", "logits"]
    alpha = client.info.layers[3].alpha
    assert np.abs(np.array(data["layers"][3]["values"]) - alpha * ref.gatta["dense1"]).max() <= 1e-5
    bad = {
        "notes.txt": (400, "not a usable image: cannot decode image (not an image)"),
        "corrupt.jpg": (400, "not a usable image: cannot decode image"),
        "huge.png": (400, "not a usable image: "),
    }
    for name, (code, message) in bad.items():
        status, data = _post(v.url, (pictures / name).read_bytes())
        assert status == code and data["error"].startswith(message) and "\n" not in data["error"], name
    assert "40,000,000" in _post(v.url, (pictures / "huge.png").read_bytes())[1]["error"]  # the pixel limit
    assert _post(v.url, b"\x89PNG" + bytes(21 * 2**20)) == (413, {"error": "image over 20 MB; send a smaller file"})
    assert _post(v.url, good, prior="zebra") == (400, {"error": "unknown class 'zebra' for the prior"})
    assert _post(v.url, good, lesion="cc")[0] == 400
    assert _post(v.url, good)[0] == 200 and client.health() == {"live": True, "ready": True, "model_ready": True}



TOO_BIG = (413, {"error": "image over 20 MB; send a smaller file"})


def _post_chunked(viewer_url, data: bytes, headers: dict):
    """POST ``data`` with chunked transfer encoding, so no Content-Length: the viewer learns the
    size only by reading."""
    url = urlsplit(viewer_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        chunks = (data[i:i + 2**16] for i in range(0, len(data), 2**16))
        conn.request("POST", "/api/classify", body=chunks, encode_chunked=True, headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_an_upload_over_the_limit_gets_the_413_not_a_reset(viewer):
    """urllib asks for Connection: close, and uvicorn closes such a socket right after the answer:
    a 413 sent with the rest of the upload unread was reset by the kernel before the client read it
    (ConnectionResetError or BrokenPipeError in about half the tries, most tries when chunked)."""
    v, _ = viewer
    big = bytes(25_000_000)
    for attempt in range(3):
        try:
            assert _post(v.url, big) == TOO_BIG  # with its Content-Length
            assert _post_chunked(v.url, big, {"Connection": "close"}) == TOO_BIG
            assert _post_chunked(v.url, big, {}) == TOO_BIG  # keep-alive
        except OSError as exc:
            pytest.fail(f"try {attempt + 1}: the connection broke instead of answering 413: {exc!r}")


def test_an_upload_declared_over_the_limit_is_refused_before_it_is_sent(viewer):
    """A client that asks first (Expect: 100-continue, curl's way with large bodies) gets the 413
    on its Content-Length alone; asking for the body instead left this one waiting for ever."""
    url = urlsplit(viewer[0].url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("POST", "/api/classify")
        conn.putheader("Content-Length", "25000000")
        conn.putheader("Expect", "100-continue")
        conn.endheaders()
        r = conn.getresponse()  # skips a 100 Continue; then times out, as the body never comes
        assert (r.status, json.loads(r.read())) == TOO_BIG
    finally:
        conn.close()


def test_a_refusal_of_a_large_upload_arrives(viewer):
    """Every answer waits for the upload, not only the 413: a 400 or 404 sent before reading a
    15 MB upload never reached urllib (a reset, as above)."""
    v, _ = viewer
    big = bytes(15_000_000)
    try:
        assert _post(v.url, big, prior="zebra") == (400, {"error": "unknown class 'zebra' for the prior"})
        assert _post(v.url, big, model="zeta")[0] == 404
        assert _post(v.url, big, top_k="x") == (400, {"error": "strength must be a number and top_k an integer"})
    except OSError as exc:
        pytest.fail(f"the connection broke instead of answering: {exc!r}")

@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium for this test")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open(browser, url):
    page = browser.new_page()
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(url)
    page.wait_for_selector("#toggles input")
    return page


@pytest.fixture(scope="module")
def page(viewer, browser):
    page = _open(browser, viewer[0].url + "/")
    yield page
    page.close()


def _settle(page, before: int) -> None:
    """Wait until the page has answered one more classification than ``before``."""
    page.wait_for_function(f"Number(document.body.dataset.done) > {before} && document.body.dataset.pending === '0'")


def _act(page, action) -> None:
    before = int(page.get_attribute("body", "data-done"))
    action()
    _settle(page, before)


def test_page_shows_the_model_prediction_lesions_and_prior(page, viewer, pictures):
    v, client = viewer
    path = str(pictures / "good.png")
    ref = client.classify([path])[0]
    base = client.classify([path], lesion=".....")[0]
    _act(page, lambda: page.set_input_files("#file", path))
    assert page.text_content("#label") == ref.label and page.text_content("#prob") == f"{100 * ref.prob:.1f}%"
    assert page.text_content("#off-label") == base.label
    assert page.locator("#maps figure[data-layer]").count() == 5
    assert page.text_content("#pattern") == "cccdd"

    _act(page, lambda: page.click("#all-off"))
    assert page.text_content("#pattern") == "....." and page.text_content("#shown-pattern") == "....."
    assert page.text_content("#label") == base.label and page.text_content("#prob") == f"{100 * base.prob:.1f}%"
    assert page.locator("#maps figure.off").count() == 5
    _act(page, lambda: page.click("#all-on"))

    # a prior towards the least likely class raises that class's probability
    target = ref.top_k[-1][0]
    _act(page, lambda: page.select_option("#prior", target))
    at_default = float(page.get_attribute("#prior-prob", "data-value"))
    assert at_default == pytest.approx(dict(client.classify([path], prior=target)[0].top_k)[target], abs=1e-6)
    _act(page, lambda: page.eval_on_selector("#strength", "e => { e.value = 0; e.dispatchEvent(new Event('change')); }"))
    at_zero = float(page.get_attribute("#prior-prob", "data-value"))
    _act(page, lambda: page.eval_on_selector("#strength", "e => { e.value = 2; e.dispatchEvent(new Event('change')); }"))
    at_two = float(page.get_attribute("#prior-prob", "data-value"))
    assert at_zero == pytest.approx(dict(ref.top_k)[target], abs=1e-6)
    assert at_two > at_default > at_zero

    port = urlsplit(v.url).port
    remote = [u for u in page.requests if not u.startswith("data:")
              and (urlsplit(u).hostname, urlsplit(u).port) != ("127.0.0.1", port)]
    assert remote == [] and len(page.requests) >= 8


def test_page_reports_bad_input_and_keeps_working(page, viewer, pictures, triton):
    v, client = viewer
    for name, message in [("notes.txt", "cannot decode image (not an image)"), ("corrupt.jpg", "cannot decode image"),
                          ("huge.png", "40,000,000")]:
        _act(page, lambda: page.set_input_files("#file", str(pictures / name)))
        assert page.is_visible("#error") and message in page.text_content("#error"), name
        assert page.is_hidden("#result")
    _act(page, lambda: page.set_input_files("#file", str(pictures / "good.png")))
    assert page.is_hidden("#error") and page.text_content("#label") == client.classify([str(pictures / "good.png")])[0].label
    assert client.health()["model_ready"]


def test_triton_gone_is_a_502_with_one_line_and_the_viewer_stays(triton, pictures):
    client = GattaClient(triton.http_url, retries=0)
    with Viewer(client) as v:
        client.url = "127.0.0.1:9"  # nothing listens there; the viewer's worker threads connect afresh
        status, data = _post(v.url, (pictures / "good.png").read_bytes())
        assert status == 502 and "cannot reach Triton at 127.0.0.1:9" in data["error"] and "\n" not in data["error"]
        with urllib.request.urlopen(f"{v.url}/api/info", timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())["pattern"] == "cccdd"


def test_view_command_without_a_server_is_one_line():
    from click.testing import CliRunner

    from gatta.client.cli import main as client_cli

    r = CliRunner().invoke(client_cli, ["view", "--url", "127.0.0.1:9", "--port", "0"])
    assert r.exit_code == 1 and "cannot reach Triton at 127.0.0.1:9" in r.output and r.output.count("\n") == 1


def test_viewer_over_grpc_answers_as_over_http(triton, viewer, pictures):
    good = (pictures / "good.png").read_bytes()
    client = GattaClient(triton.grpc_url, "grpc")
    with Viewer(client) as v:
        status, data = _post(v.url, good, lesion="cc.dd", prior="class_1", strength="0.5")
    client.close()
    assert status == 200
    reference = _post(viewer[0].url, good, lesion="cc.dd", prior="class_1", strength="0.5")[1]
    assert data["on"]["label"] == reference["on"]["label"] and data["lesion"] == "cc.dd"
    assert all(abs(data["probs"][c] - reference["probs"][c]) <= 1e-6 for c in data["probs"])


# -- several models: the picker ------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_viewer(two_model_triton):
    """The viewer started on alpha of a server that also hosts beta (tests/conftest.py)."""
    client = GattaClient(two_model_triton.http_url, model="alpha")
    with Viewer(client) as v:
        yield v, client
    client.close()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_api_lists_the_models_and_answers_for_each(two_viewer, two_model_triton, pictures):
    v, _ = two_viewer
    status, listing = _get(f"{v.url}/api/models")
    assert status == 200 and listing["default"] == "alpha"
    assert [(m["name"], m["classes"], m["image_size"], m["pattern"]) for m in listing["models"]] == [
        ("alpha", 4, 16, "cccdd"), ("beta", 7, 32, "ccccdd")]
    status, info = _get(f"{v.url}/api/info?model=beta")
    assert status == 200 and info["labels"] == BETA_CLASSES and info["image_size"] == 32
    assert [(l["name"], l["kind"], l["shape"]) for l in info["layers"]] == [
        ("stem", "conv", [16, 16]), ("layer1", "conv", [8, 8]), ("layer2", "conv", [4, 4]),
        ("layer3", "conv", [2, 2]), ("avgpool", "dense", [512]), ("logits", "dense", [7])]
    assert _get(f"{v.url}/api/info")[1]["name"] == "alpha"
    assert _get(f"{v.url}/api/info?model=zeta") == (
        404, {"error": "unknown model 'zeta'; the server's gattanet models: alpha, beta"})

    good = (pictures / "good.png").read_bytes()
    beta = GattaClient(two_model_triton.http_url, model="beta")
    status, data = _post(v.url, good, model="beta", lesion="c.c.d.", prior="fern")
    assert status == 200 and data["lesion"] == "c.c.d."
    reference = beta.classify([good], lesion="c.c.d.", prior="fern")[0]
    assert data["on"]["label"] == reference.label and abs(data["on"]["prob"] - reference.prob) <= 1e-6
    assert abs(data["off"]["prob"] - beta.classify([good], lesion="......")[0].prob) <= 1e-6
    layers = {l["name"]: l for l in data["layers"]}
    assert list(layers) == ["stem", "layer1", "layer2", "layer3", "avgpool", "logits"]
    for name, side in (("stem", 16), ("layer3", 2)):  # each conv map at its own resolution
        png = base64.b64decode(layers[name]["map"].split(",", 1)[1])
        assert Image.open(io.BytesIO(png)).size == (side, side) and "bars" not in layers[name]
    assert "map" not in layers["avgpool"] and len(layers["avgpool"]["values"]) == 512  # dense: bars
    shown = np.array(layers["avgpool"]["values"])
    assert np.abs(shown - beta.info.layers[4].alpha * reference.gatta["avgpool"]).max() <= 1e-5
    assert _post(v.url, good, model="beta", lesion="cccdd")[0] == 400  # alpha's pattern is not beta's
    assert _post(v.url, good, model="beta", prior="class_1") == (
        400, {"error": "unknown class 'class_1' for the prior"})
    beta.close()



def test_top_k_outside_the_chosen_models_classes_is_a_400(two_viewer, pictures):
    """top_k runs from 1 to the chosen model's number of classes (alpha 4, beta 7); outside, it
    was answered 200 with an empty or a shorter list."""
    v, _ = two_viewer
    good = (pictures / "good.png").read_bytes()
    for model, classes in (("alpha", 4), ("beta", 7)):
        status, data = _post(v.url, good, model=model, top_k=classes)
        assert status == 200 and len(data["on"]["top_k"]) == len(data["off"]["top_k"]) == classes, model
        for top_k in (0, -1, classes + 1):
            assert _post(v.url, good, model=model, top_k=top_k) == (
                400, {"error": f"top_k must be from 1 to {classes}, the number of classes of {model}"}), (model, top_k)
    status, data = _post(v.url, good)
    assert status == 200 and len(data["on"]["top_k"]) == 4  # the default, 5, cut to alpha's 4 classes

def test_model_picker_switches_labels_layers_and_size(two_viewer, two_model_triton, browser, pictures):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    v, alpha = two_viewer
    page = _open(browser, v.url + "/")
    path = str(pictures / "good.png")
    beta = GattaClient(two_model_triton.http_url, model="beta")
    assert page.eval_on_selector_all("#model-picker option", "os => os.map(o => o.value)") == ["alpha", "beta"]
    assert page.input_value("#model-picker") == "alpha"
    _act(page, lambda: page.set_input_files("#file", path))
    ref = alpha.classify([path])[0]
    assert page.text_content("#label") == ref.label and page.text_content("#prob") == f"{100 * ref.prob:.1f}%"
    assert page.text_content("#pattern") == "cccdd" and page.locator("#maps figure[data-layer]").count() == 5

    _act(page, lambda: page.select_option("#model-picker", "beta"))  # the same picture, through beta
    ref = beta.classify([path])[0]
    assert page.text_content("#label") == ref.label and page.text_content("#prob") == f"{100 * ref.prob:.1f}%"
    assert page.text_content("#off-label") == beta.classify([path], lesion="......")[0].label
    assert "beta (python): 7 classes, 32x32 input, layers ccccdd" in page.text_content("#model")
    assert page.text_content("#pattern") == "ccccdd" and page.locator("#toggles input").count() == 6
    figures = page.eval_on_selector_all("#maps figure[data-layer]", "fs => fs.map(f => f.dataset.layer)")
    assert figures == ["stem", "layer1", "layer2", "layer3", "avgpool", "logits"]
    assert page.locator("#maps figure[data-layer=stem] .overlay").count() == 1
    assert page.get_attribute("#maps figure[data-layer=avgpool] img", "alt") == "avgpool bars"
    assert page.eval_on_selector_all("#prior option", "os => os.map(o => o.value)") == ["", *BETA_CLASSES]
    assert page.url.endswith("/?model=beta")
    _act(page, lambda: page.click("#toggles input >> nth=1"))  # a lesion in beta's own notation
    assert page.text_content("#pattern") == "c.ccdd"
    assert page.text_content("#label") == beta.classify([path], lesion="c.ccdd")[0].label

    _act(page, lambda: page.select_option("#model-picker", "alpha"))  # and back
    assert page.text_content("#pattern") == "cccdd" and page.locator("#maps figure[data-layer]").count() == 5
    assert page.text_content("#label") == alpha.classify([path])[0].label

    # a layer toggled while beta's description is on its way: the page still ends on beta, with
    # beta's layers and labels, all of its layers on, and beta's answer for the picture
    before = int(page.get_attribute("body", "data-done"))
    page.evaluate("""() => {
        const picker = document.querySelector('#model-picker');
        picker.value = 'beta';
        picker.dispatchEvent(new Event('change'));  // /api/info?model=beta is now in flight
        document.querySelector('#toggles input').click();  // alpha's first layer: alpha classifies at once
    }""")
    try:
        page.wait_for_function(f"document.body.dataset.model === 'beta' && document.body.dataset.pending === '0' "
                               f"&& Number(document.body.dataset.done) > {before}", timeout=20_000)
    except PlaywrightTimeout:
        pytest.fail(f"the page stayed on model {page.get_attribute('body', 'data-model')!r} (layers "
                    f"{page.text_content('#pattern')}) with the picker on {page.input_value('#model-picker')!r}")
    assert page.input_value("#model-picker") == "beta" and page.url.endswith("/?model=beta")
    assert "beta (python): 7 classes, 32x32 input, layers ccccdd" in page.text_content("#model")
    assert page.text_content("#pattern") == "ccccdd" and page.locator("#toggles input:checked").count() == 6
    figures = page.eval_on_selector_all("#maps figure[data-layer]", "fs => fs.map(f => f.dataset.layer)")
    assert figures == ["stem", "layer1", "layer2", "layer3", "avgpool", "logits"]
    assert page.locator("#maps figure.off").count() == 0 and page.text_content("#shown-pattern") == "ccccdd"
    assert page.eval_on_selector_all("#prior option", "os => os.map(o => o.value)") == ["", *BETA_CLASSES]
    ref = beta.classify([path])[0]
    assert page.text_content("#label") == ref.label and page.text_content("#prob") == f"{100 * ref.prob:.1f}%"

    page.goto(v.url + "/?model=beta")  # a link to a model opens on it
    page.wait_for_function("document.body.dataset.model === 'beta'")
    assert page.input_value("#model-picker") == "beta" and page.locator("#toggles input").count() == 6
    port = urlsplit(v.url).port
    assert not [u for u in page.requests if not u.startswith("data:")
                and (urlsplit(u).hostname, urlsplit(u).port) != ("127.0.0.1", port)]
    page.close()
    beta.close()
