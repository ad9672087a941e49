"""Which models a Triton server hosts and what each one is, read through a client's calls.

A server may host several gattanet classifiers (configs carrying the model metadata,
:func:`gatta.contract.is_gattanet_config`) beside their ``_preprocess`` models, ``_encoded``
ensembles and other systems' models. A client given no model name takes the server's only
classifier; with several it raises :class:`AmbiguousModel`, naming them.
"""

from __future__ import annotations

from typing import Callable

from tritonclient.utils import InferenceServerException

from gatta import contract
from gatta.contract import ModelMetadata

from .errors import ClientError


class AmbiguousModel(ClientError):
    """No model was named and the server hosts several gattanet models (``names``)."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names


def served_device(config: dict) -> str:
    """Where the server runs the model, from the config it serves (Triton's get_model_config):
    the instance groups' kind and, for the python flavour, the ONNX Runtime provider that
    kind means (a KIND_GPU instance refuses to load without the CUDA provider)."""
    config = config.get("config", config)
    groups = config.get("instance_group") or [{"kind": "KIND_CPU", "count": 1}]
    parts = []
    for g in groups:
        kind, count = g.get("kind", "KIND_CPU"), int(g.get("count", 1))
        if kind == "KIND_GPU":
            gpus = ",".join(str(x) for x in g.get("gpus", []))
            parts.append(f"GPU {gpus or 'all'} ({count} instance{'s' if count > 1 else ''} per GPU)")
        else:
            parts.append(f"CPU ({count} instance{'s' if count > 1 else ''})")
    gpu = any(g.get("kind") == "KIND_GPU" for g in groups)
    if config.get("backend") == "python":
        runtime = f"ONNX Runtime {'CUDAExecutionProvider' if gpu else 'CPUExecutionProvider'}"
    else:
        accel = config.get("optimization", {}).get("execution_accelerators", {}).get("gpu_execution_accelerator", [])
        trt = " + TensorRT" if any(a.get("name") == "tensorrt" for a in accel) else ""
        runtime = f"Triton's {config.get('backend') or 'onnxruntime'} backend ({'CUDA' if gpu else 'CPU'}{trt})"
    return f"{'; '.join(parts)}, {runtime}"


class ServerModels:
    """The models of the server at ``url``, read over ``protocol`` with ``call``: a GattaClient's
    ``_call(what, method, *args)``, which retries and raises ServerUnreachable in one line."""

    def __init__(self, call: Callable, url: str, protocol: str):
        self._call, self.url, self.protocol = call, url, protocol
        self._as_json = {"as_json": True} if protocol == "grpc" else {}

    def names(self) -> list[str]:
        """Names of the models the server has (from its statistics, which stay unrestricted)."""
        stats = self._call("statistics", "get_inference_statistics", **self._as_json)
        return sorted({m["name"] for m in stats.get("model_stats", [])})

    def config(self, model: str) -> dict:
        return self._call("model config", "get_model_config", model, **self._as_json)

    def gattanet(self) -> dict[str, ModelMetadata]:
        """Every gattanet classifier on the server (name -> its metadata), in name order."""
        found = {}
        for name in self.names():
            try:
                config = self.config(name)
            except InferenceServerException:  # e.g. unloaded between the two calls
                continue
            if contract.is_gattanet_config(config):
                found[name] = ModelMetadata.from_model_config(config)
        return found

    def only_gattanet(self) -> str:
        """The default model: the server's only gattanet model; a one-line error otherwise."""
        names = list(self.gattanet())
        if len(names) == 1:
            return names[0]
        if not names:
            raise ClientError(f"the server at {self.url} hosts no gattanet model; it has: "
                              f"{', '.join(self.names()) or 'no models'}")
        raise AmbiguousModel(f"the server at {self.url} hosts {len(names)} gattanet models ({', '.join(names)}); "
                             "choose one with --model NAME", names)

    def describe(self, model: str) -> tuple[ModelMetadata, str]:
        """Model ``model``'s metadata and where the server runs it (:func:`served_device`);
        ClientError in one line when it is not there or is no gattanet classifier."""
        try:
            config = self.config(model)
        except InferenceServerException as exc:
            models = self.names()
            if model not in models:
                raise ClientError(f"model '{model}' is not on the server at {self.url}; "
                                  f"it has: {', '.join(models) or 'no models'}") from None
            raise ClientError(f"cannot read model '{model}': {str(exc).splitlines()[0]}") from None
        if not contract.is_gattanet_config(config):
            raise ClientError(f"model '{model}' at {self.url} is not a gattanet export "
                              f"(no '{contract.PARAM_METADATA}' parameter)")
        info = ModelMetadata.from_model_config(config)
        info.max_batch_size = info.max_batch_size or 1
        return info, served_device(config)
