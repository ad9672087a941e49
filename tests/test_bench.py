"""The benchmark's arithmetic: interleaving order, per-round ratios, spreads, busy detection,
and the performance page rendering exactly what its JSON holds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatta.bench.interleaved import Window, interleave, is_busy, latency_overhead, machine_load, ratios

ROOT = Path(__file__).resolve().parents[1]


def test_rounds_alternate_order_and_ratios_are_per_round():
    calls = []
    rates = {"a": iter([100, 50, 80]), "b": iter([50, 50, 20])}  # round 3: both slow, a 4x b

    def row(name):
        def measure():
            calls.append(name)
            return Window(next(rates[name]), 1.0, [1.0 if name == "a" else 3.0])
        return measure

    windows = interleave({"a": row("a"), "b": row("b")}, rounds=3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    r = ratios(windows, "a", "b")
    assert (r["median"], r["min"], r["max"], r["n"]) == (2.0, 1.0, 4.0, 3)
    assert latency_overhead(windows, "b", "a")["median"] == 2.0


def test_busy_machine_is_detected():
    quiet = {"loadavg": [0.1, 0.1, 0.1], "cores": 2, "others_cpu_percent": 2.0}
    assert not is_busy(quiet)
    assert not is_busy({**quiet, "loadavg": [1.5, 0.2, 0.1]})  # a lagging average alone is not busy
    assert is_busy({**quiet, "others_cpu_percent": 60.0})


def test_machine_load_sees_a_busy_process_outside_the_run():
    # started through a shell that exits at once, so the spinner is not this run's child
    out = subprocess.run(["sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    pid = int(out.stdout.strip())
    try:
        deadline = time.monotonic() + 30  # sample once it spins, not while Python starts
        spun = 0.2 * os.sysconf("SC_CLK_TCK")  # 0.2 s of user CPU, in clock ticks
        while int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11]) < spun and time.monotonic() < deadline:
            time.sleep(0.05)
        load = machine_load(sample_s=0.5)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert load["others_cpu_percent"] > 50 and load["cores"] >= 1 and len(load["loadavg"]) == 3
    assert any(f"({pid})" in b for b in load["busiest"])


@pytest.fixture
def fake_result():
    s = lambda m, lo, hi: {"median": m, "min": lo, "max": hi, "n": 5}  # noqa: E731
    cfg = {"b16_c8": s(6200, 6000, 6400), "ratio_b16_c8": s(0.91, 0.88, 0.93), "b1_p50_ms": s(0.6, 0.58, 0.65),
           "b1_overhead_ms": s(0.4, 0.35, 0.45),
           "cpu_ms_per_image": {"client": 0.05, "tritonserver": 0.02, "python stubs": 0.25}}
    load = {"loadavg": [0.1, 0.2, 0.3], "cores": 2, "others_cpu_percent": 1.0, "busiest": []}
    return {"machine": "test machine", "date": "2026-01-01 00:00 UTC", "rounds": 5, "seconds": 3.0,
            "load_start": load, "load_end": load, "busy": False,
            "in_process": {"b16": s(6800, 6500, 7000), "b1_p50_ms": s(0.2, 0.19, 0.21),
                           "cpu_ms_per_image": {"in-process": 0.29}},
            "configs": {"default": cfg},
            "second_pass": {"batch": 256, "rounds": 20, "baseline_ms": s(10.0, 9.5, 11.0),
                            "models": {"shipped (T=1)": {"iterations": 1, "floor": 1.918, "ratio": s(2.1, 2.0, 2.3),
                                                         "vs_floor": 2.1 / 1.918}}}}


def test_performance_page_renders_its_json(tmp_path, fake_result):
    (tmp_path / "r.json").write_text(json.dumps(fake_result))
    out = tmp_path / "performance.md"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_serving.py"), "--from-json",
                        str(tmp_path / "r.json"), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1000:]
    text = out.read_text()
    assert "| default | 6,200 [6,000-6,400] | 6,800 [6,500-7,000] | 0.91 [0.88-0.93] |" in text
    assert "| default | 0.600 [0.580-0.650] | +0.400 [+0.350-+0.450] |" in text
    assert "| default | 0.050 | 0.020 | 0.250 | 0.320 | 6,250 |" in text  # 2 cores / 0.32 ms
    assert "WARNING" not in text
    assert "| shipped (T=1) | 2.10 [2.00-2.30]x | 1.92x | 1.09x |" in text
    (tmp_path / "r.json").write_text(json.dumps({**fake_result, "busy": True}))
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_serving.py"), "--from-json",
                    str(tmp_path / "r.json"), "--out", str(out)], check=True, capture_output=True)
    assert "WARNING: the machine was busy" in out.read_text()


def test_published_performance_page_is_its_json_rendered(tmp_path):
    """docs/performance.md is generated: it must be exactly what its JSON renders to."""
    out = tmp_path / "performance.md"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_serving.py"), "--from-json",
                    str(ROOT / "docs" / "performance.json"), "--out", str(out)], check=True, capture_output=True)
    assert out.read_text() == (ROOT / "docs" / "performance.md").read_text()


def test_analytic_floor_counts_every_pass():
    from gatta.bench.graphs import analytic_floor
    from gatta.model.config import GattaConfig
    from gatta.model.network import GattaNet

    one, prefix = analytic_floor(GattaNet(GattaConfig()))
    two, _ = analytic_floor(GattaNet(GattaConfig(iterations=2)))
    assert round(prefix, 3) == 0.082 and round(one, 3) == 1.918  # conv1 runs once
    assert two == pytest.approx(3 - 2 * prefix)


def test_backbone_passes_graph_is_the_backbone_run_again(tmp_path):
    """The measured floor's graph: every pass's logits equal the baseline's, and ONNX Runtime
    runs the later stages (convolutions and poolings) once per pass: merged passes would put
    the floor at one pass."""
    import collections

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from gatta.bench.graphs import backbone_passes_session, export_backbone_passes
    from gatta.model.network import GattaNet

    from helpers import make_model

    for iterations in (1, 2):
        model = make_model(iterations=iterations)
        def count(kind):
            return [sum(isinstance(m, kind) for m in s.modules()) for s in model.backbone.stages]
        path = export_backbone_passes(model, tmp_path / f"passes{iterations}.onnx")
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(tmp_path / f"opt{iterations}.onnx")
        session = backbone_passes_session(path, opts)
        image = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
        outs = session.run(None, {"image": image})
        with torch.no_grad():
            expected = GattaNet.forward_backbone(model, torch.from_numpy(image)).numpy()
        assert len(outs) == iterations + 1
        for out in outs:
            np.testing.assert_allclose(out, expected, atol=1e-5)
        ran = collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
        for op, kind in (("Conv", torch.nn.Conv2d), ("MaxPool", torch.nn.MaxPool2d)):
            per_stage = count(kind)
            assert ran[op] == per_stage[0] + (iterations + 1) * sum(per_stage[1:]), op


def test_second_pass_rounds_on_a_tiny_model():
    from gatta.bench.graphs import second_pass_rounds

    from helpers import make_model

    out = second_pass_rounds({"t1": make_model(), "t2": make_model(iterations=2)}, batch=8, rounds=4)
    assert out["rounds"] == 4 and out["models"]["t1"]["ratio"]["n"] == 4
    assert out["models"]["t2"]["floor"] > out["models"]["t1"]["floor"] > 1.5
    t1, t2 = out["models"]["t1"], out["models"]["t2"]
    assert t1["measured_floor"]["n"] == t1["vs_measured_floor"]["n"] == 4
    # each model is held against the floor of its own step count, not the first model's
    assert (t1["measured_floor_graph"], t2["measured_floor_graph"]) == ("2 passes, no attention",
                                                                        "3 passes, no attention")
    with pytest.raises(ValueError, match="models of one backbone"):
        second_pass_rounds({"t1": make_model(), "r": make_model(backbone="resnet18")}, batch=2, rounds=1)


def test_bench_data_head_step_trains_the_head_alone():
    """bench_data.py --step head times the step `gatta-train head` takes: the paper's ResNet
    head on a frozen ResNet18 (23,862 trained parameters at 200 classes, as `gatta-train
    summary` counts them), the backbone's weights and statistics untouched."""
    import importlib.util

    import torch
    import torch.nn.functional as F

    spec = importlib.util.spec_from_file_location("bench_data", ROOT / "scripts" / "bench_data.py")
    bench_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_data)
    torch.manual_seed(0)
    net, opt = bench_data.make_step_model("head", 200, 64, "cpu")
    assert sum(p.numel() for group in opt.param_groups for p in group["params"]) == 23_862
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = net(torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last))
    F.cross_entropy(out.logits, torch.tensor([0, 1])).backward()
    opt.step()
    changed = {k for k, v in net.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith("head.") for k in changed), sorted(changed)[:5]


def test_bench_slices_runs_every_image_of_a_batch_in_slices(tmp_path):
    """bench_slices.py times a batch as consecutive slices: every image is run once, the last
    slice short, and each image's logits are those of the whole-batch run (the graph is batch
    independent to float rounding)."""
    import importlib.util

    import numpy as np

    from gatta.model.checkpoint import load_checkpoint

    spec = importlib.util.spec_from_file_location("bench_slices", ROOT / "scripts" / "bench_slices.py")
    bench_slices = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_slices)
    toy, _ = load_checkpoint(ROOT / "models" / "cifar10-toy-d16.pt")
    rows = bench_slices.rows_for(toy, tmp_path, "toy", 10, [4])
    assert list(rows) == ["baseline whole", "baseline in slices of 4", "gattanet whole", "gattanet in slices of 4"]
    feeds = {"image": np.random.default_rng(0).random((10, 3, 32, 32), dtype=np.float32)}
    whole = rows["gattanet whole"].run(None, feeds)
    sliced = rows["gattanet in slices of 4"].run(None, feeds)
    assert [len(s) for s in whole] == [10] and [len(s) for s in sliced] == [4, 4, 2]
    np.testing.assert_allclose(np.concatenate(sliced), whole[0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(whole[0], rows["baseline whole"].run(None, feeds)[0], atol=1e-3)
