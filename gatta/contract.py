"""What crosses the wall between training, export, serving and the client, defined once.

Torch-free (numpy, and Pillow through :mod:`gatta.decoder`) so the client, the load tools and
the exporter all read it:

- the served tensor names and their dtype, and the defaults of the optional inputs;
- what a model may be named (:data:`MODEL_NAME`) and what makes a model a gattanet classifier
  (:func:`is_gattanet_config`);
- :class:`ModelMetadata`, the model description the exporter writes into the classifier's
  config.pbtxt (parameter ``gatta``) and every reader parses back with :meth:`from_json` /
  :meth:`from_model_config`;
- the keys of the config.pbtxt ``parameters`` that carry the metadata, names, defaults and
  bounds to the python-backend models, which cannot import this package (the exporter writes
  them: :func:`gatta.export.repository.triton_parameters`);
- the class-direction sign rule behind top-down attention (:func:`class_directions`).

The accepted range of each input lives in :mod:`gatta.bounds`, the lesion notation in
:mod:`gatta.lesion` (:meth:`ModelMetadata.lesion_mask` applies it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gatta.decoder import Preprocessing
from gatta.lesion import LesionError, full_pattern, parse_lesion

# -- tensor names -----------------------------------------------------------------------------
IMAGE = "image"  # B x 3 x H x W, pixels in [0, 1]
LESION_MASK = "lesion_mask"  # B x L, 1 = attention modulates that attached layer
QUERY_BIAS = "query_bias"  # B x d, added to q_avg (top-down attention)
IMAGE_BYTES = "image_bytes"  # B x 1 encoded JPEG/PNG, input of the encoded-image ensemble
LOGITS = "logits"
PROBS = "probs"  # carries labels.txt for Triton's classification extension
Q_AVG = "q_avg"
GATTA_PREFIX = "gatta_"  # gatta_<layer>: one agreement map per attached layer

DTYPE = "FP32"  # every numeric tensor; Triton data type name without the TYPE_ prefix
NUMPY_DTYPE = np.float32

# What an optional input means when the caller leaves it out: the full model, no bias.
OPTIONAL_DEFAULTS = {LESION_MASK: 1.0, QUERY_BIAS: 0.0}

# A model name: a folder name that Triton, URLs and Prometheus labels all take as is; no leading
# dot, which marks the exporter's staging folders.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# Model names of the encoded-image pipeline written beside the classifier <name>.
PREPROCESS_SUFFIX = "_preprocess"
ENCODED_SUFFIX = "_encoded"

# config.pbtxt parameter keys
PARAM_METADATA = "gatta"  # ModelMetadata.to_json()
PARAM_TENSORS = "tensors"  # role -> tensor name, for the python-backend models
PARAM_DEFAULTS = "defaults"  # optional input -> fill value
PARAM_BOUNDS = "bounds"  # input -> Bounds.to_dict(), see gatta.bounds.INPUT_BOUNDS
PARAM_IMAGE_SIZE = "image_size"
PARAM_PREPROCESSING = "preprocessing"  # Preprocessing.to_dict() as JSON

# A python-flavour model exported for a GPU host serves config.pbtxt (KIND_GPU instances, ONNX
# Runtime's CUDA execution provider) and carries configs/cpu.pbtxt (KIND_CPU, CPU provider),
# which gatta-serve selects with tritonserver --model-config-name=cpu on hosts without a GPU.
CPU_CONFIG_NAME = "cpu"
# The graph file the python-flavour model loads (config parameter PARAM_GRAPH; absent: GRAPH_FILE).
# A GPU export's CPU twin loads CPU_GRAPH_FILE where the exporter wrote one: the same model with
# its modulations shaped for ONNX Runtime's blocked CPU layout (export/cpu_layout.py).
PARAM_GRAPH = "graph"
GRAPH_FILE = "model.onnx"
CPU_GRAPH_FILE = "model_cpu.onnx"


def gatta_output(layer: str) -> str:
    """Name of the agreement map of attached layer ``layer``: ``gatta_conv1``."""
    return GATTA_PREFIX + layer


def default_input(name: str, batch: int, dims: Sequence[int]) -> np.ndarray:
    """The value an omitted optional input stands for, for ``batch`` images."""
    return np.full((batch, *dims), OPTIONAL_DEFAULTS[name], NUMPY_DTYPE)


def tensor_roles() -> dict[str, str]:
    """Role -> name map that the python-backend models read from their config."""
    return {"image": IMAGE, "image_bytes": IMAGE_BYTES, "lesion_mask": LESION_MASK,
            "query_bias": QUERY_BIAS, "probs": PROBS, "gatta_prefix": GATTA_PREFIX}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton data type without the TYPE_ prefix: FP32, BYTES
    dims: tuple[int, ...]  # per-image shape (the batch axis is implicit)
    optional: bool = False  # may the caller leave it out?


IMAGE_BYTES_SPEC = TensorSpec(IMAGE_BYTES, "BYTES", (1,))


# -- the model description ------------------------------------------------------------------
@dataclass
class LayerInfo:
    name: str
    kind: str  # conv | dense
    shape: list[int]  # gatta map shape per image
    alpha: float | None = None  # modulation strength: a unit is scaled by 1 + alpha * gatta


@dataclass
class ModelMetadata:
    """A served GAttANet, as the exporter describes it and every reader reads it back.

    ``name`` and ``max_batch_size`` are Triton's own config fields: they are not part of the
    JSON and are filled by :meth:`from_model_config`.
    """

    image_size: int
    d: int
    labels: list[str]
    layers: list[LayerInfo]
    baseline: bool = False
    class_keys: np.ndarray | None = None  # [classes, d], see class_directions()
    flavour: str = ""  # onnxruntime | python, set per written repository
    name: str = ""
    max_batch_size: int = 0
    # how the client and the preprocessing model decode a picture for this model; None (a
    # repository exported before it was recorded): squashed to image_size, bilinear
    preprocessing: Preprocessing | None = None

    def __post_init__(self):
        if self.preprocessing is None:
            self.preprocessing = Preprocessing(self.image_size)

    # -- derived -----------------------------------------------------------------------------
    @property
    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]

    @property
    def full_pattern(self) -> str:
        """The all-modulated lesion pattern, e.g. ``cccdd``."""
        return full_pattern(self.kinds)

    @property
    def inputs(self) -> list[TensorSpec]:
        size = self.image_size
        specs = [TensorSpec(IMAGE, DTYPE, (3, size, size))]
        if not self.baseline:
            specs += [TensorSpec(LESION_MASK, DTYPE, (len(self.layers),), optional=True),
                      TensorSpec(QUERY_BIAS, DTYPE, (self.d,), optional=True)]
        return specs

    @property
    def outputs(self) -> list[TensorSpec]:
        classes = (len(self.labels),)
        specs = [TensorSpec(LOGITS, DTYPE, classes), TensorSpec(PROBS, DTYPE, classes)]
        if not self.baseline:
            specs.append(TensorSpec(Q_AVG, DTYPE, (self.d,)))
            specs += [TensorSpec(gatta_output(l.name), DTYPE, tuple(l.shape)) for l in self.layers]
        return specs

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def optional_inputs(self) -> list[TensorSpec]:
        return [t for t in self.inputs if t.optional]

    def lesion_mask(self, lesion: str | Sequence[float] | None) -> np.ndarray:
        """[L] mask from the paper's notation (``c.cdd``), a sequence, or None (full model)."""
        n = len(self.layers)
        if lesion is None:
            return np.full(n, OPTIONAL_DEFAULTS[LESION_MASK], NUMPY_DTYPE)
        mask = parse_lesion(lesion, self.kinds) if isinstance(lesion, str) else list(lesion)
        if len(mask) != n:
            raise LesionError(f"lesion mask has {len(mask)} entries; model has {n} attached layers")
        return np.asarray(mask, NUMPY_DTYPE)

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        keys = [] if self.class_keys is None else [[round(v, 6) for v in row] for row in np.asarray(self.class_keys).tolist()]
        return {"flavour": self.flavour, "image_size": self.image_size, "d": self.d,
                "layers": [{k: v for k, v in vars(l).items() if v is not None} for l in self.layers],
                "labels": list(self.labels), "baseline": self.baseline, "class_keys": keys,
                "preprocessing": self.preprocessing.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, meta: dict[str, Any], **extra) -> "ModelMetadata":
        keys = np.asarray(meta.get("class_keys") or [], NUMPY_DTYPE)
        return cls(image_size=int(meta["image_size"]), d=int(meta["d"]), labels=list(meta["labels"]),
                   layers=[LayerInfo(**l) for l in meta["layers"]], baseline=bool(meta.get("baseline")),
                   class_keys=keys if keys.size else None, flavour=meta.get("flavour", ""),
                   preprocessing=Preprocessing.from_dict(meta["preprocessing"]) if meta.get("preprocessing") else None,
                   **extra)

    @classmethod
    def from_json(cls, text: str, **extra) -> "ModelMetadata":
        return cls.from_dict(json.loads(text), **extra)

    @classmethod
    def from_model_config(cls, config: dict) -> "ModelMetadata":
        """From Triton's model config as JSON (HTTP ``get_model_config``, gRPC ``as_json``).
        Raises KeyError when the model carries no ``gatta`` parameter."""
        config = config.get("config", config)
        params = config.get("parameters", {})
        return cls.from_json(params[PARAM_METADATA]["string_value"], name=config.get("name", ""),
                             max_batch_size=int(config.get("max_batch_size", 0)))


def is_gattanet_config(config_or_params) -> bool:
    """Whether a model is a gattanet classifier: its config carries the metadata parameter
    (``gatta``), which the ``_encoded`` ensembles, the ``_preprocess`` models and other systems'
    models do not. Takes Triton's model config as protobuf (a config.pbtxt parsed with
    ``model_config_pb2``) or as JSON (``get_model_config``; gRPC's ``{"config": ...}`` too), or
    its ``parameters`` alone.

        >>> is_gattanet_config({"name": "gatta", "parameters": {"gatta": {"string_value": "{}"}}})
        True
    """
    config = config_or_params
    if isinstance(config, dict):
        config = config.get("config", config)
        params = config.get("parameters", config)
    else:
        params = getattr(config, "parameters", config)
    return PARAM_METADATA in params


def class_directions(logits_keys, logits_alpha: float):
    """Row c: the direction in query space that raises class c's modulated logit.

    ``logits_keys`` is the logits layer's key matrix as [classes, d] (numpy or torch). Its
    row K[c] moves class c's agreement; whether more agreement amplifies or damps the logit
    depends on the sign of that layer's alpha, so the sign is folded in here. Adding
    ``s * dir[c] / |dir[c]|^2`` to q_avg (the ``query_bias`` input) favours class c.
    """
    return (1.0 if logits_alpha >= 0 else -1.0) * logits_keys


def prior_bias(directions: np.ndarray, index: int, strength: float) -> np.ndarray:
    """The ``query_bias`` that moves q_avg by ``strength`` towards class ``index``."""
    key = np.asarray(directions[index], NUMPY_DTYPE)
    return (strength * key / max(float(key @ key), 1e-12)).astype(NUMPY_DTYPE)
