"""The alerting rules (serving/monitoring/alerts.yml): valid for Debian's promtool, raising the
expected alerts on synthetic series (tests/assets/alerts_test.yml), watching metrics a real
tritonserver exports (the gatta_* ones as gatta/metrics.py defines them), evaluated without
error by a real Prometheus scraping it, and loaded by the compose and Kubernetes assets."""

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

from gatta import metrics
from gatta.serving.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "serving" / "monitoring"
RULES = MONITORING / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "assets" / "alerts_test.yml"
SELECTOR = re.compile(r'\b((?:nv|gatta)_[a-z_]+)(?:\{([^}]*)\})?')


def _promtool(*args) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "Debian's promtool is not installed (make test installs it: apt-get install prometheus)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def _alerts() -> dict[str, dict]:
    return {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}


def test_rules_pass_promtool_check():
    r = _promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in r.stdout
    assert set(_alerts()) == {"GattaModelNotAnswering", "GattaRejectedRequestsRising", "GattaQueueTimeHigh",
                              "GattaNonFiniteOutputs", "GattaClassMixShift"}


def test_rules_raise_the_expected_alerts_on_synthetic_series():
    r = _promtool("test", "rules", str(RULE_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    # every alert is shown firing at least once, and quiet at least once
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == set(_alerts())
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == set(_alerts())


def test_rules_and_their_tests_name_only_metrics_and_labels_the_model_defines():
    # a name or label that drifted from gatta/metrics.py would watch nothing, and promtool's
    # synthetic series would still make the alert fire in its tests
    defined = {m.name: m for m in metrics.METRICS}
    watched = 0
    for name, rule in _alerts().items():
        for metric, labels in SELECTOR.findall(rule["expr"]):
            if metric.startswith("gatta_"):
                assert metric in defined, f"{name} watches {metric}, which gatta/metrics.py does not define"
                keys = set(re.findall(r'(\w+)\s*(?:=~|!~|!=|=)', labels))
                assert keys <= {metrics.MODEL_LABEL, defined[metric].label}, f"{name}: {metric} has no label {keys}"
                watched += 1
    assert watched >= 5
    series = {m for m, _ in SELECTOR.findall(RULE_TESTS.read_text()) if m.startswith("gatta_")}
    assert series and series <= set(defined), f"{RULE_TESTS.name} feeds {series - set(defined)}, not in gatta/metrics.py"


def test_rules_watch_metrics_and_label_values_a_real_server_exports(triton):
    exported = urllib.request.urlopen(triton.metrics_url, timeout=10).read().decode()
    series = [l for l in exported.splitlines() if l and not l.startswith("#")]
    checked = 0
    for name, rule in _alerts().items():
        for metric, labels in SELECTOR.findall(rule["expr"]):
            matching = [s for s in series if s.startswith(metric + "{") or s.startswith(metric + " ")]
            assert matching, f"{name} watches {metric}, which tritonserver does not export"
            for key, op, value in re.findall(r'(\w+)\s*(!?=)\s*"([^"]*)"', labels or ""):
                if op == "=":  # the exact label value must exist on the real series
                    assert any(f'{key}="{value}"' in s for s in matching), f"{name}: no {metric} with {key}={value}"
            checked += 1
    assert checked >= 10


def test_compose_and_kubernetes_load_the_rules():
    r = _promtool("check", "config", str(MONITORING / "prometheus.yml"))  # resolves rule_files beside it
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rule files found" in r.stdout
    compose = yaml.safe_load((MONITORING / "docker-compose.yml").read_text())
    assert "./alerts.yml:/etc/prometheus/alerts.yml:ro" in compose["services"]["prometheus"]["volumes"]
    config_map = yaml.safe_load((ROOT / "serving" / "k8s" / "prometheus-rules.yaml").read_text())
    assert config_map["kind"] == "ConfigMap"
    assert config_map["data"]["gattanet-alerts.yml"] == RULES.read_text(), \
        "serving/k8s/prometheus-rules.yaml must hold serving/monitoring/alerts.yml verbatim"


def _query(port: int, path: str) -> dict:
    body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read())
    assert body["status"] == "success", body
    return body["data"]


def test_a_real_prometheus_evaluates_every_rule_without_error(triton, tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is not installed (make test installs it: apt-get install prometheus)"
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        f"scrape_configs:\n  - job_name: triton\n    static_configs:\n      - targets: ['127.0.0.1:{triton.metrics_port}']\n")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = httpclient.InferenceServerClient(triton.http_url)
        x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
        for scaled in (x, x * 255, x):  # answered, refused, answered: series of every kind
            t = httpclient.InferInput("image", list(x.shape), "FP32")
            t.set_data_from_numpy(scaled)
            try:
                client.infer("gatta", [t])
            except InferenceServerException:
                pass
        client.close()
        deadline = time.monotonic() + 60
        while True:  # until every rule has been evaluated after a scrape
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with status {proc.returncode}")
            try:
                rules = [r for g in _query(port, "/api/v1/rules")["groups"] for r in g["rules"]]
                scraped = _query(port, "/api/v1/query?" + urllib.parse.urlencode({"query": "up"}))["result"]
                if scraped and len(rules) == len(_alerts()) and all(r["health"] != "unknown" for r in rules):
                    time.sleep(2)  # two more evaluations with data
                    rules = [r for g in _query(port, "/api/v1/rules")["groups"] for r in g["rules"]]
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prometheus never evaluated the rules within 60 s"
            time.sleep(0.5)
        assert [(r["name"], r["health"], r.get("lastError", "")) for r in rules if r["health"] != "ok"] == []
    finally:
        proc.terminate()
        proc.wait(30)
