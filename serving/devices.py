"""Where each model of a repository runs on this host, decided before tritonserver starts.

A python-flavour model exported for a GPU (``gatta-export --device gpu``, what the Docker image
bakes) has KIND_GPU instances in config.pbtxt and a CPU twin in configs/cpu.pbtxt. On a host
without a GPU, or whose ONNX Runtime lacks the CUDA provider, tritonserver is started with
``--model-config-name=cpu`` and the reason is said in one line; a model with no CPU twin (the
native onnxruntime flavour) cannot be served here, which is said in one line too.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gatta.contract import CPU_CONFIG_NAME


class PlacementError(RuntimeError):
    """A model needs a backend or a device this host lacks."""


@dataclass
class Placement:
    args: list[str] = field(default_factory=list)  # extra tritonserver arguments
    note: str = ""  # one line when the models run elsewhere than their config.pbtxt says


def has_gpu() -> bool:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def cuda_provider_available() -> bool:
    """Whether this Python's ONNX Runtime (the one the python-backend stub runs) has CUDA."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def read_configs(repository: Path) -> dict:
    """model name -> parsed config.pbtxt (Triton's ModelConfig)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    configs = {}
    for path in sorted(Path(repository).glob("*/config.pbtxt")):
        try:
            configs[path.parent.name] = text_format.Parse(path.read_text(), mc.ModelConfig())
        except text_format.ParseError as exc:
            raise PlacementError(f"{path} is not a valid Triton model config: {exc}") from None
    return configs


def placement(repository: Path, backends: set[str], origin: str, gpu: bool | None = None,
              cuda: bool | None = None) -> Placement:
    """How to start tritonserver on ``repository`` here; raises PlacementError in one line.
    ``gpu``/``cuda`` override the host checks (tests)."""
    from tritonclient.grpc import model_config_pb2 as mc

    configs = read_configs(repository)
    for model, config in configs.items():
        if config.backend and backends and config.backend not in backends:
            raise PlacementError(
                f"model '{model}' needs Triton's {config.backend} backend, which this tritonserver ({origin}: "
                f"{', '.join(sorted(backends))}) lacks; re-export with `gatta-export --flavor python` "
                "or serve from NVIDIA's Triton container (see Dockerfile)")
    on_gpu = [m for m, c in configs.items() if any(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in c.instance_group)]
    if not on_gpu:
        return Placement()
    if not (has_gpu() if gpu is None else gpu):
        reason = "this host has no GPU"
    elif any(configs[m].backend == "python" for m in on_gpu) and not (cuda_provider_available() if cuda is None else cuda):
        reason = "onnxruntime here has no CUDAExecutionProvider (install the onnxruntime-gpu wheel, docs/serving.md)"
    else:
        return Placement()
    for model in on_gpu:
        if not (Path(repository) / model / "configs" / f"{CPU_CONFIG_NAME}.pbtxt").exists():
            raise PlacementError(f"model '{model}' is configured for a GPU (KIND_GPU) and {reason}; re-export with "
                                 "`gatta-export --flavor python` (--device gpu writes a CPU twin, --device cpu "
                                 "serves on the CPU only)")
    return Placement([f"--model-config-name={CPU_CONFIG_NAME}"],
                     f"{reason}: serving {', '.join(on_gpu)} on the CPU (configs/{CPU_CONFIG_NAME}.pbtxt, "
                     "ONNX Runtime CPUExecutionProvider)")
