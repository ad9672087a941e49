"""Reliability under load, faults and hostile input, against real tritonserver processes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import tritonclient.http as httpclient
from PIL import Image

from gatta.bench.soak import run_soak
from gatta.export.verify import ort_session
from gatta.serving.launcher import descendants, free_ports, start_server
from gatta.serving.watchdog import dead_stubs, stub_processes


def _pool(repo, n=12, seed=0):
    images = np.random.default_rng(seed).random((n, 3, 16, 16), dtype=np.float32)
    lesion = np.array([1, 0, 1, 1, 1], np.float32)
    expected = ort_session(repo / "gatta" / "1" / "model.onnx").run(
        ["probs"], {"image": images, "lesion_mask": np.tile(lesion, (n, 1))})[0]
    return images, expected, lesion


def test_short_soak_every_response_matched_and_correct(triton, tiny_export):
    images, expected, lesion = _pool(tiny_export[0])
    before = triton.memory_rss()
    report = run_soak(triton.http_url, images, expected, lesion, requests=600, concurrency=8, processes=2)
    assert report["ok"] == 600, report
    assert report["failed"] == report["mismatched"] == report["wrong_id"] == 0
    grpc = run_soak(triton.grpc_url, images, expected, lesion, requests=200, concurrency=4, processes=2,
                    protocol="grpc")
    assert grpc["ok"] == 200, grpc
    after = triton.memory_rss()
    assert before > 0 and after < before * 1.5  # no runaway growth over 800 requests
    assert triton.ready()


def _classify(url, folder, out):
    return subprocess.run([sys.executable, "-m", "gatta.client.cli", "classify", str(folder), "--url", url,
                           "--output", str(out), "--resume", "--concurrency", "2", "--batch-size", "2",
                           "--timeout", "10"], capture_output=True, text=True, timeout=300)


def test_kill_9_mid_run_then_resume_classifies_each_image_once(tiny_export, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(300):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "results.jsonl"
    server = start_server(tiny_export[0], log_path=tmp_path / "a.log")
    env = {**os.environ}
    client = subprocess.Popen([sys.executable, "-m", "gatta.client.cli", "classify", str(folder), "--url",
                               server.http_url, "--output", str(out), "--resume", "--concurrency", "2",
                               "--batch-size", "2", "--timeout", "10"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 20):
        time.sleep(0.05)
    os.killpg(server.process.pid, signal.SIGKILL)  # server and its stubs, no warning
    server.process.wait()
    # communicate, not wait: the client reports each of the ~280 unsent images on stderr (~62 KB
    # measured, at the edge of a 64 KiB pipe), and a full unread pipe would block it for good
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == 2 and "failed" in stderr.splitlines()[-1], stderr[-500:]
    first = [json.loads(l) for l in out.read_text().splitlines() if l.strip().endswith("}")]
    done_first = {r["path"] for r in first if "error" not in r}
    assert 20 <= len(done_first) < 300  # killed mid-run
    server = start_server(tiny_export[0], log_path=tmp_path / "b.log")
    try:
        rerun = _classify(server.http_url, folder, out)
    finally:
        server.stop()
    assert rerun.returncode == 0, rerun.stderr[-500:]
    records = [json.loads(l) for l in out.read_text().splitlines() if l.strip().endswith("}")]
    good = [r["path"] for r in records if "error" not in r]
    assert len(good) == len(set(good)) == 300  # every image exactly once


def _infer_once(client):
    x = np.random.default_rng(2).random((1, 3, 16, 16), dtype=np.float32)
    tensor = httpclient.InferInput("image", [1, 3, 16, 16], "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer("gatta", [tensor]).as_numpy("probs")


def test_triton_alone_keeps_reporting_ready_after_its_stub_dies(tiny_export, tmp_path):
    """The upstream behaviour the watchdog exists for (Triton 2.51's python backend)."""
    server = start_server(tiny_export[0], log_path=tmp_path / "s.log")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        _infer_once(client)
        stubs = stub_processes(server)
        assert sorted(stubs.values()) == ["gatta_0_0", "gatta_preprocess_0_0"]
        os.kill(next(p for p, name in stubs.items() if name == "gatta_0_0"), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while dead_stubs(server, stubs) != ["gatta_0_0"]:
            assert time.monotonic() < deadline, "the killed stub still looks alive after 30 s"
            time.sleep(0.05)
        while True:  # Triton notices on its own next health check of the stub
            try:
                _infer_once(client)
            except Exception as exc:
                assert "not healthy" in str(exc), exc
                break
            assert time.monotonic() < deadline, "requests still succeed 30 s after the stub was killed"
            time.sleep(0.05)
        assert dead_stubs(server, stubs) == ["gatta_0_0"]
        # a stub that died before the watchdog's first look is found too (as a zombie child)
        assert [name.startswith("python-backend stub pid") for name in dead_stubs(server, {})] == [True]
        assert client.is_server_ready() and client.is_model_ready("gatta")  # it still says ready
        client.close()
    finally:
        server.stop(10)


def test_gatta_serve_restarts_the_server_when_a_stub_dies(tiny_export, tmp_path):
    ports = [str(p) for p in free_ports(3)]
    serve = subprocess.Popen([sys.executable, "-m", "gatta.serving.cli", "--model-repository", str(tiny_export[0]),
                              "--http-port", ports[0], "--grpc-port", ports[1], "--metrics-port", ports[2],
                              "--watchdog-interval", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"127.0.0.1:{ports[0]}"
        _wait_ready(url)
        client = httpclient.InferenceServerClient(url)
        reference = _infer_once(client)
        client.close()
        stub = next(p for p in descendants(serve.pid) if " gatta_0_0 " in _cmdline(p))
        os.kill(stub, signal.SIGKILL)
        deadline, probs = time.monotonic() + 240, None
        while time.monotonic() < deadline and probs is None:
            client = httpclient.InferenceServerClient(url)
            try:
                probs = _infer_once(client)
            except Exception:
                time.sleep(0.5)
            finally:
                client.close()
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            out, err = serve.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            serve.kill()
            out, err = serve.communicate()
    assert probs is not None, err[-2000:]
    assert np.abs(probs - reference).max() <= 1e-6
    assert " died " in err and "restarted and ready" in err
    assert serve.returncode == 0


def _wait_ready(url, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client = httpclient.InferenceServerClient(url)
            if client.is_server_ready():
                client.close()
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline()) + " "
    except psutil.Error:
        return ""


def test_requests_after_an_unreachable_server_fail_at_once(tiny_export, tmp_path):
    """Once one request has spent its retries on a dead server, the rest are not sent one by
    one through their own backoff: they come back at once, recorded as errors."""
    from gatta.client import GattaClient

    server = start_server(tiny_export[0], log_path=tmp_path / "s.log")
    client = GattaClient(server.http_url, retries=2, backoff=0.05)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    images = [np.full((16, 16, 3), i, np.uint8) for i in range(40)]
    results = list(client.classify_many(images, concurrency=2, batch_size=2, maps=False))
    assert len(results) == 40 and all(r.error for r in results)
    skipped = [r for r in results if r.error.startswith("not sent: cannot reach Triton")]
    tried = [r for r in results if r.error.startswith("cannot reach Triton") and "tried 3 times" in r.error]
    assert len(tried) + len(skipped) == 40
    assert 2 <= len(tried) <= 4  # only the requests in flight when the server went away retried
