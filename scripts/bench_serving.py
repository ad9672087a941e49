"""`make bench`: Triton against in-process ONNX Runtime on the same model.onnx, measured so that a
second run gives the same ratio. Writes docs/performance.md and docs/performance.json.

Every round measures each row once, back to back (order flipped every other round):
- in-process ONNX Runtime as a user would run it (an `InferenceSession` with default options:
  all cores), batch 16 in a loop, and batch 1 for latency;
- for each served configuration (export defaults, and alternatives such as 2 instances x 1
  thread), 8 gRPC client threads sending batch 16 for a window, and 1 thread sending batch 1.
  The load runs in its own process with prepared requests, asking for `probs` only.
The reported figures are medians of per-round ratios with their min-max spread. The CPU each
process used (load generator, tritonserver, python-backend stubs, in-process ONNX Runtime) is
accounted per image: on a 2-core machine client and server share the cores, and that sets the
ceiling. The machine's load is recorded before and after; a busy machine is said out loud.

    python scripts/bench_serving.py [--rounds 5] [--seconds 3] [--configs default,1x1,2x1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil

from gatta.bench.interleaved import (interleave, is_busy, latency_overhead, machine_load, ratios,
                                     spread)
from gatta.bench.graphs import FAMILY_ROWS, family_rows, second_pass_rounds
from gatta.bench.served import InProcess, Served, cpu_per_image
from gatta.export.exporter import ExportOptions, export_checkpoint
from gatta.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = psutil.virtual_memory().total / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, no GPU; Python {platform.python_version()}, "
            f"onnxruntime {ort.__version__}, Triton 2.51 (nvidia-pytriton)")


def export_config(ckpt: Path, spec: str, out: Path) -> Path:
    """``default``: gatta-export's defaults; ``IxT``: I instances x T ONNX Runtime threads;
    ``qN``: the dynamic batcher waits N microseconds for a batch to fill."""
    opts = {"out": out, "flavour": "python"}
    if spec.startswith("q"):
        opts["queue_delay_us"] = int(spec[1:])
    elif spec != "default":
        instances, threads = spec.split("x")
        opts.update(instances=int(instances), threads=int(threads))
    export_checkpoint(ckpt, ExportOptions(**opts))
    return out


def random_resnet(path: Path) -> Path:
    """A ResNet18 GAttANet as Tiny-ImageNet would train it (64x64, 200 classes, d=8, batch norm
    on keys/queries, layer norm on gatta), random weights: the graph's cost is the same."""
    from gatta.model.checkpoint import save_checkpoint
    from gatta.model.config import GattaConfig
    from gatta.model.network import GattaNet

    model = GattaNet(GattaConfig(backbone="resnet18", num_classes=200, d=8, image_size=64, alpha_init=0.1,
                                 qk_batchnorm=True, gatta_layernorm=True)).eval()
    return save_checkpoint(path, model, {"stage": "head"})


def describe(model) -> str:
    c = model.config
    return f"{c.backbone} {c.image_size}x{c.image_size}, {c.num_classes} classes, d={c.d}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=ROOT / "models" / "cifar10-toy-d16.pt")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per window")
    parser.add_argument("--configs", default="default,q200,2x1",
                        help="served configurations: default (export defaults), INSTANCESxTHREADS, qDELAY_US")
    parser.add_argument("--families", default=",".join(FAMILY_ROWS),
                        help="backbones whose second pass is timed at 224 px (comma-separated; empty: none)")
    parser.add_argument("--steps-ckpt", type=Path, action="append", default=[],
                        help="more checkpoints (e.g. a T=2 head on the same backbone) for the second-pass cost table")
    parser.add_argument("--resnet-ckpt", type=Path, default=None,
                        help="the ResNet rows' model (default: a random-weight ResNet18 GAttANet, 64x64, 200 classes, "
                             "d=8, the paper's head: timing does not depend on the weights)")
    parser.add_argument("--no-resnet", action="store_true", help="skip the ResNet rows")
    parser.add_argument("--from-json", type=Path, default=None, help="re-render the markdown from an earlier run's JSON")
    args = parser.parse_args()
    if args.from_json:
        args.out.write_text(render(json.loads(args.from_json.read_text())))
        print(args.out.read_text())
        return
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    load_start = machine_load()
    if is_busy(load_start):
        say(f"WARNING: the machine is busy before the run (load {load_start['loadavg']}, other processes "
            f"{load_start['others_cpu_percent']}% CPU: {', '.join(load_start['busiest'])}); figures will be noisy")
    work = Path(tempfile.mkdtemp(prefix="gatta-bench-"))
    configs = args.configs.split(",")
    repos = {c: export_config(args.ckpt, c, work / c) for c in configs}
    model_path = repos[configs[0]] / "gatta" / "1" / "model.onnx"
    size = load_checkpoint(args.ckpt)[0].config.image_size
    local = InProcess(model_path, size)
    resnet_ckpt = None if args.no_resnet else (args.resnet_ckpt or random_resnet(work / "resnet18.pt"))
    served = {}
    try:
        for c in configs:
            say(f"starting tritonserver for {c} ...")
            served[c] = Served(repos[c], size)
        rows = {"in-process b16": lambda: local.window(16, args.seconds),
                "in-process b1": lambda: local.window(1, args.seconds)}
        for c in configs:
            rows[f"{c} b16 c8"] = lambda s=served[c]: s.window(16, 8, args.seconds)
            rows[f"{c} b1 c1"] = lambda s=served[c]: s.window(1, 1, args.seconds)
        if resnet_ckpt:
            say("exporting the ResNet and starting its tritonserver ...")
            r_size = load_checkpoint(resnet_ckpt)[0].config.image_size
            r_repo = export_config(resnet_ckpt, "default", work / "resnet")
            r_local = InProcess(r_repo / "gatta" / "1" / "model.onnx", r_size)
            served["resnet"] = Served(r_repo, r_size)
            rows.update({"resnet in-process b16": lambda: r_local.window(16, args.seconds),
                         "resnet in-process b1": lambda: r_local.window(1, args.seconds),
                         "resnet b16 c8": lambda s=served["resnet"]: s.window(16, 8, args.seconds),
                         "resnet b1 c1": lambda s=served["resnet"]: s.window(1, 1, args.seconds)})
        windows = interleave(rows, args.rounds, say)
    finally:
        for s in served.values():
            s.stop()
    say("second-pass cost: GAttANet / baseline graphs in-process, batch 64 ...")
    steps = {"shipped (T=1)": load_checkpoint(args.ckpt)[0]}
    for extra in args.steps_ckpt:
        m = load_checkpoint(extra)[0]
        steps[f"{extra.name} (T={m.config.iterations})"] = m
    second_pass = second_pass_rounds(steps, rounds=4 * args.rounds)
    resnet = None
    if resnet_ckpt:
        say("second-pass cost of the ResNet, batch 32 ...")
        r_model = load_checkpoint(resnet_ckpt)[0]
        resnet = {"model": describe(r_model), "second_pass": second_pass_rounds({describe(r_model): r_model},
                                                                                  batch=32, rounds=4 * args.rounds),
                  "in_process": {"b16": spread([w.per_s for w in windows["resnet in-process b16"]]),
                                 "b1_p50_ms": spread([float(np.median(w.latencies_ms))
                                                      for w in windows["resnet in-process b1"]])},
                  "served": {"b16_c8": spread([w.per_s for w in windows["resnet b16 c8"]]),
                             "ratio_b16_c8": ratios(windows, "resnet b16 c8", "resnet in-process b16"),
                             "b1_p50_ms": spread([float(np.median(w.latencies_ms)) for w in windows["resnet b1 c1"]]),
                             "b1_overhead_ms": latency_overhead(windows, "resnet b1 c1", "resnet in-process b1")}}
    families = family_rows([f for f in args.families.split(",") if f], rounds=args.rounds, progress=say)
    load_end = machine_load()
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "rounds": args.rounds, "seconds": args.seconds, "load_start": load_start, "load_end": load_end,
              "busy": is_busy(load_start) or is_busy(load_end), "configs": {}, "second_pass": second_pass,
              "resnet": resnet, "families": families}
    result["in_process"] = {"b16": spread([w.per_s for w in windows["in-process b16"]]),
                            "b1_p50_ms": spread([float(np.median(w.latencies_ms)) for w in windows["in-process b1"]]),
                            "cpu_ms_per_image": cpu_per_image(windows["in-process b16"])}
    for c in configs:
        result["configs"][c] = {
            "b16_c8": spread([w.per_s for w in windows[f"{c} b16 c8"]]),
            "ratio_b16_c8": ratios(windows, f"{c} b16 c8", "in-process b16"),
            "b1_p50_ms": spread([float(np.median(w.latencies_ms)) for w in windows[f"{c} b1 c1"]]),
            "b1_overhead_ms": latency_overhead(windows, f"{c} b1 c1", "in-process b1"),
            "cpu_ms_per_image": cpu_per_image(windows[f"{c} b16 c8"]),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    args.out.write_text(render(result))
    print(args.out.read_text())
    if result["busy"]:
        say("WARNING: the machine was busy during this run (see the load lines); do not publish these figures")


def _range(s: dict, fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}-{fmt.format(s['max'])}]"


def _floor_note(second_pass: dict) -> list[str]:
    if not any("measured_floor" in m for m in second_pass["models"].values()):
        return []
    return ["Measured floor: the backbone's passes with no attention at all (stage 0 once, the rest T+1 "
            "times; bench/graphs.py `export_backbone_passes`), timed in the same rounds: what the GAttANet "
            "graph would cost if its attention were free. It charges what multiply-adds do not count "
            "(pooling, normalisation, layout copies).", ""]


def _second_pass_table(models: dict, first: str = "model") -> list[str]:
    """One row per GAttANet graph: over its baseline, its analytic floor and, where measured,
    its measured floor (older results have none: their pages keep their columns)."""
    measured = all("measured_floor" in m for m in models.values())
    with_base = all("baseline_ms" in m for m in models.values())
    head = [first] + (["baseline ms a batch"] if with_base else []) + ["GAttANet / baseline", "analytic floor",
                                                                       "median / floor"]
    if measured:
        head += ["measured floor", "GAttANet / measured floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in models.items():
        cells = [label] + ([_range(m["baseline_ms"], "{:.1f}")] if with_base else [])
        cells += [f"{_range(m['ratio'], '{:.2f}')}x", f"{m['floor']:.2f}x", f"{m['vs_floor']:.2f}x"]
        if measured:
            cells += [f"{_range(m['measured_floor'], '{:.2f}')}x", f"{_range(m['vs_measured_floor'], '{:.2f}')}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def render(result: dict) -> str:
    ls, le = result["load_start"], result["load_end"]
    ip = result["in_process"]
    lines = ["# Performance: Triton vs in-process ONNX Runtime", "",
             f"Generated by `make bench` ({result['date']}) on: {result['machine']}.", "",
             f"{result['rounds']} rounds; every round measures each row once for {result['seconds']:g} s, back to "
             "back, the order flipped every other round. Figures: median [min-max] over the rounds; ratios are "
             "taken within a round. Load generator: 8 (or 1) gRPC client threads in their own process, prepared "
             "requests, `probs` only. In-process: `onnxruntime.InferenceSession(model.onnx)` with default options "
             "(all cores), one caller.", "",
             f"Machine load: before {ls['loadavg']} (1/5/15-min load average), other processes "
             f"{ls['others_cpu_percent']}% CPU; after {le['loadavg']} (this run's own load included), other processes "
             f"{le['others_cpu_percent']}%. The run counts as busy when other processes used more than 10% of a core "
             "before or after it.", ""]
    if result["busy"]:
        lines += ["**WARNING: the machine was busy during this run; these figures are not comparable.**", ""]
    lines += ["## Throughput, batch 16, 8 concurrent gRPC requests", "",
              "| served configuration | Triton img/s | in-process img/s | Triton / in-process |", "|---|---|---|---|"]
    for c, r in result["configs"].items():
        lines.append(f"| {c} | {_range(r['b16_c8'])} | {_range(ip['b16'])} | "
                     f"{_range(r['ratio_b16_c8'], '{:.2f}')} |")
    lines += ["", "## Latency, batch 1, one request at a time", "",
              f"In-process p50: {_range(ip['b1_p50_ms'], '{:.3f}')} ms.", "",
              "| served configuration | Triton p50 ms | added by serving (p50, ms) |", "|---|---|---|"]
    for c, r in result["configs"].items():
        lines.append(f"| {c} | {_range(r['b1_p50_ms'], '{:.3f}')} | {_range(r['b1_overhead_ms'], '{:+.3f}')} |")
    lines += ["", "## Where the CPU goes (batch 16, concurrency 8, CPU ms per image)", "",
              "| served configuration | load generator | tritonserver (front end, queue) | python stubs (IPC + ONNX Runtime) | total | ceiling on "
              f"{ls['cores']} cores (img/s) |", "|---|---|---|---|---|---|"]
    cores = ls["cores"]
    for c, r in result["configs"].items():
        cpu = r["cpu_ms_per_image"]
        total = sum(cpu.values())
        lines.append(f"| {c} | {cpu['client']:.3f} | {cpu['tritonserver']:.3f} | {cpu['python stubs']:.3f} | "
                     f"{total:.3f} | {cores * 1e3 / total:,.0f} |")
    ipc = ip["cpu_ms_per_image"]["in-process"]
    lines += [f"| in-process ONNX Runtime | - | - | - | {ipc:.3f} | {cores * 1e3 / ipc:,.0f} |", "",
              "The ceiling is what the cores could do if they did nothing but this work: on one machine the load "
              "generator's CPU is spent on the same cores as the server's.", "",
              ]
    sp = result.get("second_pass")
    if sp:
        lines += [f"## Cost of the second pass (in-process, ONNX Runtime defaults, batch {sp['batch']})", "",
                  f"{sp['rounds']} rounds, each running the baseline graph and every GAttANet graph {sp.get('reps', 1)} "
                  "times back to back after a moment of quiet and two untimed runs (the steady state of a server "
                  "running one model; the median of those is the round's time); baseline "
                  f"{_range(sp['baseline_ms'], '{:.1f}')} ms a batch. Floor: T+1 passes minus the prefix (conv1) "
                  "that runs once, from the multiply-adds.", "",
                  *_floor_note(sp), *_second_pass_table(sp["models"])]
    rn = result.get("resnet")
    if rn:
        sv, ipr = rn["served"], rn["in_process"]
        lines += [f"## ResNet rows ({rn['model']})", "",
                  "Export defaults, measured in the same interleaved rounds as the rows above.", "",
                  "| | Triton | in-process | Triton / in-process |", "|---|---|---|---|",
                  f"| batch 16, 8 concurrent gRPC requests (img/s) | {_range(sv['b16_c8'])} | {_range(ipr['b16'])} | "
                  f"{_range(sv['ratio_b16_c8'], '{:.2f}')} |",
                  f"| batch 1, p50 (ms) | {_range(sv['b1_p50_ms'], '{:.2f}')} | {_range(ipr['b1_p50_ms'], '{:.2f}')} | "
                  f"added {_range(sv['b1_overhead_ms'], '{:+.2f}')} ms |", ""]
        rsp = rn["second_pass"]
        lines += [f"Cost of the second pass, batch 32, {rsp['rounds']} rounds (baseline "
                  f"{_range(rsp['baseline_ms'], '{:.1f}')} ms a batch); the floor counts the stem "
                  "(conv1-bn1-ReLU) once:", "",
                  *_second_pass_table(rsp["models"])]
    fam = result.get("families")
    if fam and fam["models"]:
        lines += [f"## Cost of the second pass per backbone family ({fam['image_size']} px, batch {fam['batch']})", "",
                  f"Random weights with calibrated batch-norm statistics, each family's head recipe (d, batch norm, "
                  f"layer norm) and the attach rule of docs/backbones.md; {fam['rounds']} rounds as above, each "
                  "GAttANet graph over its own baseline graph. The floor: what must run twice (every stage after "
                  "the first attached layer), from the multiply-adds.", "",
                  *_second_pass_table(fam["models"], first="backbone")]
    lines += ["Where the time beyond the floor goes, which ONNX Runtime release, and what a batch-1 request "
              "spends where: [performance-analysis.md](performance-analysis.md).", "",
              "## GPU rows", "",
              "Empty: no GPU machine has run these yet (the development machines have none). On one, "
              "`pytest -m requires_cuda` checks the GPU path; then compare in-process ONNX Runtime (CUDA provider) "
              "with Triton serving the shipped python flavour (`gatta-export --flavor python --device gpu`, "
              "onnxruntime-gpu, KIND_GPU) at batch 1, 16 and 64.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
