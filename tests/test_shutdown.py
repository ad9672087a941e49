"""Prompt, clean shutdown under `gatta-serve`: SIGTERM while clients hold idle keep-alive
connections (HTTP inference and metrics ports, a gRPC channel) and a request is in flight."""

import http.client
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from gatta.serving.devices import has_gpu
from gatta.serving.launcher import free_ports
from gatta.serving.shutdown import EXIT_TIMEOUT_S

ASSETS = Path(__file__).parent / "assets" / "hold_model"


def _poll(condition, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise TimeoutError(what)


def _get(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


@pytest.fixture
def hold_repo(tiny_export, tmp_path):
    """The tiny exported repository plus `hold`, a model whose request stays in flight until
    the test creates the release file."""
    repo = tmp_path / "repo"
    shutil.copytree(tiny_export[0], repo)
    (repo / "hold" / "1").mkdir(parents=True)
    shutil.copy(ASSETS / "model.py", repo / "hold" / "1" / "model.py")
    markers = {"started": tmp_path / "started", "release": tmp_path / "release"}
    config = (ASSETS / "config.pbtxt.in").read_text()
    config = config.replace("@STARTED@", str(markers["started"])).replace("@RELEASE@", str(markers["release"]))
    (repo / "hold" / "config.pbtxt").write_text(config)
    return repo, markers


def test_sigterm_drains_in_flight_and_exits_zero_despite_idle_connections(hold_repo, tmp_path):
    repo, markers = hold_repo
    http_port, grpc_port, metrics_port = free_ports(3)
    serve = subprocess.Popen([sys.executable, "-m", "gatta.serving.cli", "--model-repository", str(repo),
                              "--http-port", str(http_port), "--grpc-port", str(grpc_port),
                              "--metrics-port", str(metrics_port), "--log-file", str(tmp_path / "triton.log")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        keep = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
        _poll(lambda: _ready(http_port), what="server ready")
        assert _get(keep, "/v2/health/ready")[0] == 200  # keep-alive connection, now idle
        scrape = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=30)
        assert _get(scrape, "/metrics")[0] == 200  # a Prometheus-style keep-alive scrape connection
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        assert service_pb2_grpc.GRPCInferenceServiceStub(channel).ServerReady(service_pb2.ServerReadyRequest()).ready

        answer = {}

        def in_flight():
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=120)
            body = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [41.0]}]})
            conn.request("POST", "/v2/models/hold/infer", body)
            response = conn.getresponse()
            answer["status"], answer["body"] = response.status, json.loads(response.read())

        request = threading.Thread(target=in_flight)
        request.start()
        _poll(markers["started"].exists, what="request in flight")  # the model is executing it

        signalled = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        # The drain refuses new work at once: `gatta` (idle) unloads while `hold` is still busy,
        # and a new request on the idle keep-alive connection gets a clean refusal, not a reset.
        _poll(lambda: _get(keep, "/v2/models/gatta/ready")[0] != 200, what="gatta unloaded")
        image = {"name": "image", "shape": [1, 3, 16, 16], "datatype": "FP32", "data": [0.5] * 768}
        keep.request("POST", "/v2/models/gatta/infer", json.dumps({"inputs": [image]}))
        response = keep.getresponse()
        refusal = response.status, json.loads(response.read())["error"]
        assert request.is_alive() and serve.poll() is None  # the in-flight request holds the shutdown

        released = time.monotonic()
        markers["release"].touch()
        request.join(60)
        code = serve.wait(60)
        exited = time.monotonic()
    finally:
        if serve.poll() is None:
            serve.kill()
        out, err = serve.communicate()
    assert answer["status"] == 200 and answer["body"]["outputs"][0]["data"] == [42.0], answer
    assert code == 0, err[-2000:]
    # Triton alone waits its full --exit-timeout-secs (30 s before) for the idle HTTP connection
    # and then fails with exit status 1 (code above); drained, only the short exit timeout
    # remains. The bound leaves a slow host room and still fails the old 30 s wait.
    assert exited - released < EXIT_TIMEOUT_S + 20, (exited - released, err[-1000:])
    assert 400 <= refusal[0] < 500 and "gatta" in refusal[1], refusal
    assert "draining" in err
    if not has_gpu():  # the repository is the image's GPU shape: its CPU twin, said in one line
        assert "this host has no GPU: serving gatta on the CPU (configs/cpu.pbtxt" in err
    keep.close(), scrape.close(), channel.close()
    print(f"SIGTERM -> exit {exited - signalled:.1f} s, of which {released - signalled:.1f} s holding the request")


def _ready(port) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        ok = _get(conn, "/v2/health/ready")[0] == 200
        conn.close()
        return ok
    except OSError:
        return False
