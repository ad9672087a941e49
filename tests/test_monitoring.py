"""Monitoring assets for real: Debian's prometheus scrapes the tritonserver fixture and every
dashboard expression returns data; the dashboard and the alert rules query the gatta_* metrics
gatta/metrics.py defines, every one of them, and the server exports them as defined; Dockerfile
lint; Kubernetes manifests validate."""

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml

from gatta import metrics
from gatta.serving.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "serving" / "monitoring" / "grafana" / "dashboards" / "gattanet.json"
RULES = ROOT / "serving" / "monitoring" / "alerts.yml"
GATTA_METRIC = re.compile(r"\bgatta_[a-z0-9_]+")
BIN = Path(sys.executable).parent


def _query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def prometheus(triton, tmp_path_factory):
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is not installed (make test installs it: apt-get install prometheus)"
    root = tmp_path_factory.mktemp("prom")
    port = free_port()
    (root / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: triton\n    static_configs:\n      - targets: ['127.0.0.1:{triton.metrics_port}']\n")
    proc = subprocess.Popen([binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # until Prometheus answers and has scraped the server once
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with status {proc.returncode} while starting")
            try:
                up = _query(port, "up")
                if up and up[0]["value"][1] == "1":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus on port {port} never scraped tritonserver within 60 s")
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def _gatta_metrics(exprs) -> set[str]:
    return {m for expr in exprs for m in GATTA_METRIC.findall(expr)}


def test_dashboard_and_rules_query_the_defined_metrics_and_every_one():
    defined = {m.name for m in metrics.METRICS}
    dashboard = _gatta_metrics(t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"])
    rules = _gatta_metrics(r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"])
    assert dashboard - defined == set(), f"{DASHBOARD.name} queries metrics gatta/metrics.py does not define"
    assert rules - defined == set(), f"{RULES.name} queries metrics gatta/metrics.py does not define"
    # a metric nothing watches is either dead weight in the model or a panel someone forgot
    assert defined - dashboard - rules == set(), "defined in gatta/metrics.py, but no dashboard panel or alert reads it"


def test_the_server_exports_every_defined_metric_as_defined(triton):
    exported = urllib.request.urlopen(triton.metrics_url, timeout=10).read().decode()
    for m in metrics.METRICS:  # created when the model loads, before any request
        assert f"# HELP {m.name} {m.help}\n" in exported and f"# TYPE {m.name} {m.kind}\n" in exported, m.name
        series = [l for l in exported.splitlines() if l.startswith(m.name + "{")]
        keys = {k for s in series for k in re.findall(r'(\w+)="', s)}
        assert series and keys == {metrics.MODEL_LABEL, m.label} - {""}, (m.name, keys)
    le = {re.search(r'le="([^"]+)"', l)[1] for l in exported.splitlines()
          if l.startswith(metrics.CONFIDENCE_BUCKET.name + "{") and 'model="gatta"' in l}
    assert le == {str(b) for b in metrics.CONFIDENCE_BUCKETS} | {"+Inf"}


def test_every_dashboard_expression_returns_data(triton, prometheus):
    client = httpclient.InferenceServerClient(triton.http_url)
    rng = np.random.default_rng(0)
    for i in range(40):  # load over several scrapes: plain, lesioned, and refused requests
        x = rng.random((1 + i % 4, 3, 16, 16), dtype=np.float32)
        inputs = [httpclient.InferInput("image", list(x.shape), "FP32")]
        inputs[0].set_data_from_numpy(x)
        if i % 5 == 0:
            mask = np.zeros((x.shape[0], 5), np.float32)
            inputs.append(httpclient.InferInput("lesion_mask", list(mask.shape), "FP32"))
            inputs[1].set_data_from_numpy(mask)
        client.infer("gatta", inputs)
        time.sleep(0.15)  # pacing: the load spans several 1 s scrapes, as rate() needs
    client.close()
    # wait for two scrapes after the last request (the model flushes its metrics once a second)
    loaded = time.time()
    deadline = time.monotonic() + 60
    while float(_query(prometheus, "timestamp(up)")[0]["value"][1]) < loaded + 2:
        assert time.monotonic() < deadline, "prometheus stopped scraping"
        time.sleep(0.2)
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len(panels) >= 12
    empty = []
    for panel in panels:
        for target in panel["targets"]:
            result = _query(prometheus, target["expr"].replace("$__rate_interval", "30s"))
            if not result:
                empty.append((panel["title"], target["expr"]))
    gpu = {p["title"] for p in panels if "GPU" in p["description"]}
    assert gpu == {"GPU utilisation", "GPU memory used"}
    assert [title for title, _ in empty if title not in gpu] == [], empty
    throughput = _query(prometheus, 'sum(increase(nv_inference_count{model="gatta"}[1m]))')
    assert float(throughput[0]["value"][1]) > 0


def test_dockerfile_lints_clean():
    r = subprocess.run([str(BIN / "hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    text = (ROOT / "Dockerfile").read_text()
    assert "nvcr.io/nvidia/tritonserver:24.10-py3" in text  # Triton 2.51, what the tests run
    for needle in ("EXPOSE 8000 8001 8002", "HEALTHCHECK", "\"health\", \"--infer\"", "USER 1000", "--flavor python --device gpu",
                   "onnxruntime-gpu=="):
        assert needle in text, needle


def test_kubernetes_manifests_validate():
    manifests = sorted((ROOT / "serving" / "k8s").glob("*.yaml"))
    r = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", *map(str, manifests)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    text = "\n".join(p.read_text() for p in manifests)
    for needle in ("autoscaling/v2", "health\", \"--infer", "/v2/health/ready", "nvidia.com/gpu", "triton_queue_us_per_request"):
        assert needle in text, needle
