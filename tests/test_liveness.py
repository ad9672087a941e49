"""The production path's probes and key: the liveness probe sends a real inference (and so sees
a dead python-backend stub that Triton's own endpoints hide); the container's entry point never
runs with a known admin key; the Dockerfile and the Kubernetes manifests use these probes and
keep the grace period consistent with the drain."""

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gatta.serving.admin_key import KeyFileError, admin_key
from gatta.serving.launcher import free_ports, start_server
from gatta.serving.watchdog import stub_processes

ROOT = Path(__file__).resolve().parents[1]
CLIENT = [sys.executable, "-m", "gatta.client.cli"]


def _health(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLIENT, "health", "--infer", "--url", url, "--timeout", "10"],
                          capture_output=True, text=True, timeout=120)


def test_infer_probe_fails_when_the_stub_is_dead_while_triton_says_ready(tiny_export, tmp_path):
    server = start_server(tiny_export[0], log_path=tmp_path / "s.log")
    try:
        healthy = _health(server.http_url)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert re.fullmatch(r"live=yes ready=yes model_ready=yes infer=yes \(\d+\.\d ms\)\n", healthy.stdout)
        stubs = stub_processes(server)
        os.kill(next(p for p, name in stubs.items() if name == "gatta_0_0"), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (dead := _health(server.http_url)).returncode == 0:
            time.sleep(0.2)  # the stub's death reaches Triton asynchronously
        assert dead.returncode == 1
        # Triton's own endpoints still say yes; only the inference shows the fault, in one line
        assert dead.stdout.startswith("live=yes ready=yes model_ready=yes infer=no: ")
        assert "not healthy" in dead.stdout and dead.stdout.count("\n") == 1, dead.stdout
    finally:
        server.stop(10, drain_timeout=None)


def test_admin_key_is_never_a_default(tmp_path, monkeypatch):
    monkeypatch.delenv("GATTA_ADMIN_KEY", raising=False)
    said = []
    key_file = tmp_path / "run" / "admin-key"
    key = admin_key(key_file, said.append)
    assert re.fullmatch(r"[0-9a-f]{32}", key) and key_file.read_text() == key + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert said == [f"GATTA_ADMIN_KEY is not set: generated a random admin key for the shared-memory, trace "
                    f"and logging APIs; read it from {key_file}"]
    assert admin_key(key_file, said.append) == key and len(said) == 1  # a restart reads the same file
    assert admin_key(None) != admin_key(None)  # no file: random per start
    for bad in ("change-me", "short"):
        monkeypatch.setenv("GATTA_ADMIN_KEY", bad)
        with pytest.raises(KeyFileError, match="published default|too short"):
            admin_key(key_file)


def test_container_entrypoint_generates_a_key_and_protects_the_operator_apis(tiny_export, tmp_path):
    """The image's entry point, run for real here (gatta-serve on PATH, loopback ports)."""
    env = {k: v for k, v in os.environ.items() if k != "GATTA_ADMIN_KEY"}
    env.update(PATH=f"{Path(sys.executable).parent}:{env['PATH']}", MODEL_REPOSITORY=str(tiny_export[0]),
               GATTA_ADMIN_KEY_FILE=str(tmp_path / "admin-key"))
    ports = [str(p) for p in free_ports(3)]
    proc = subprocess.Popen(["sh", str(ROOT / "serving" / "docker-entrypoint.sh"), "--host", "127.0.0.1",
                             "--http-port", ports[0], "--grpc-port", ports[1], "--metrics-port", ports[2],
                             "--log-file", str(tmp_path / "t.log")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"127.0.0.1:{ports[0]}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (probe := _health(url)).returncode != 0 and proc.poll() is None:
            time.sleep(0.5)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        key = (tmp_path / "admin-key").read_text().strip()
        import urllib.error
        import urllib.request

        def logging_api(headers):
            request = urllib.request.Request(f"http://{url}/v2/logging", headers=headers)
            try:
                return urllib.request.urlopen(request, timeout=10).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert logging_api({}) == 403 and logging_api({"admin-key": "change-me"}) == 403
        assert logging_api({"admin-key": key}) == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-1500:]
    assert f"read it from {tmp_path / 'admin-key'}" in err and key not in out + err  # the key is never logged


def test_dockerfile_and_kubernetes_probe_the_model_and_agree_on_the_grace_period():
    docker = (ROOT / "Dockerfile").read_text()
    assert "GATTA_ADMIN_KEY=" not in docker  # no baked key, not even an empty default
    assert re.search(r'HEALTHCHECK .*\n\s*CMD \["gatta-client", "health", "--infer"', docker)
    deployment = yaml.safe_load((ROOT / "serving" / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["exec"]["command"][:4] == ["gatta-client", "health", "--infer", "--timeout"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    args = container.get("args", [])
    drain = float(args[args.index("--drain-timeout") + 1]) if "--drain-timeout" in args else 30.0
    from gatta.serving.shutdown import EXIT_TIMEOUT_S

    # the pod is killed only after the endpoints had time to drop it, requests in flight their
    # drain time, and Triton its exit timeout (plus a margin for the python stubs to exit)
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + drain + EXIT_TIMEOUT_S + 5


def test_log_tail_never_reads_from_a_pipe(tmp_path):
    """The container logs Triton to /dev/stdout (a pipe): reading it back would block."""
    from gatta.serving.launcher import TritonProcess

    fifo = tmp_path / "log"
    os.mkfifo(fifo)
    assert TritonProcess(None, "127.0.0.1", 1, 2, 3, fifo, "key").log_tail() == ""
