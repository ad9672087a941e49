"""Write a Triton model repository from a verified ONNX file and its metadata.

    <out>/
      <name>/                 the classifier (flavour: onnxruntime or python)
        config.pbtxt
        labels.txt            Triton's classification extension, on the `probs` output
        <version>/model.onnx  (python flavour: also <version>/model.py)
        configs/cpu.pbtxt     python flavour exported for a GPU host: the CPU fallback
      <name>_preprocess/      python: encoded JPEG/PNG bytes -> image tensor
      <name>_encoded/         ensemble: image_bytes -> <name>_preprocess -> <name>

Both flavours come from the same ModelMetadata, so their tensors are identical. Triton's
onnxruntime backend refuses optional inputs on batching models, so there `lesion_mask` and
`query_bias` are required (clients send ones/zeros); in the python flavour they are optional.
Every config.pbtxt is built as Triton's own ``ModelConfig`` message and written with protobuf
``text_format``; the contract (metadata, tensor names, defaults) travels in its ``parameters``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Sequence

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from gatta import contract
from gatta.bounds import INPUT_BOUNDS
from gatta.contract import ModelMetadata, TensorSpec
from gatta.cores import available_cores as export_cores  # the exporting host's cores

FLAVOURS = ("onnxruntime", "python")
DEVICES = ("cpu", "gpu")
AUTO = "auto"
MAX_AUTO_INSTANCES = 4  # beyond this, more ONNX Runtime threads per instance rather than more stubs
CORES_PER_AUTO_INSTANCE = 2  # on 2 cores, 1 x 2 threads served as fast as 2 x 1 and cut 0.4 ms at batch 1
# A template line "# @@gatta.<module>@@" is replaced at export by gatta/<module>.py's source:
# code inside Triton cannot import gatta, so the shared modules it runs travel pasted in.
PASTE_MARKER = "# @@gatta.{}@@"
PASTED = {"preprocess_model.py": ("decoder",), "classifier_model.py": ("metrics", "guards", "cores")}
DECODER_MARKER = PASTE_MARKER.format("decoder")


@dataclasses.dataclass
class RepositoryOptions:
    """How to lay the model out in Triton (the exporter's options that reach config.pbtxt)."""

    name: str = "gatta"
    version: int = 1
    flavour: str = "python"  # one of FLAVOURS
    max_batch: int = 64
    threads: int | str = AUTO  # python flavour: ONNX Runtime intra-op threads per instance, or auto
    tensorrt_fp16: bool = False
    encoded: bool = True  # also write the encoded-bytes preprocessing ensemble
    dynamic_batching: bool = True
    queue_delay_us: int = 0  # the dynamic batcher's wait for more requests to join a batch (0: batch what queued)
    instances: int | str = AUTO  # Triton model instances (instance_group count), or auto
    warmup: bool = True  # onnxruntime flavour: one warm-up batch at load
    device: str = "cpu"  # python flavour: cpu (KIND_CPU) or gpu (KIND_GPU + configs/cpu.pbtxt)
    graph: str = contract.GRAPH_FILE  # python flavour: the ONNX file in the version folder it loads


def resolve_instances(instances: int | str, flavour: str, device: str) -> int:
    """``auto``: on CPU one instance per CORES_PER_AUTO_INSTANCE cores of the exporting host,
    at least 1 and at most MAX_AUTO_INSTANCES (the model then shares the serving host's cores
    among its instances; the measured alternatives are in docs/serving.md); on a GPU (either
    flavour) one instance per GPU."""
    if instances != AUTO:
        if int(instances) < 1:
            raise ValueError(f"instances must be >= 1 or auto, got {instances!r}")
        return int(instances)
    if flavour == "onnxruntime" or device == "gpu":
        return 1
    return max(1, min(export_cores() // CORES_PER_AUTO_INSTANCE, MAX_AUTO_INSTANCES))


def _threads(threads: int | str) -> str:
    """The intra_op_threads parameter: a count, or ``auto`` (the model divides the serving
    host's cores among its instances when it loads; templates/classifier_model.py)."""
    if threads == AUTO:
        return AUTO
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1 or auto, got {threads!r}")
    return str(int(threads))


def _tensor(message, spec: TensorSpec, optional_ok: bool = False, label_file: str = "") -> None:
    message.name = spec.name
    message.data_type = mc.DataType.Value("TYPE_STRING" if spec.dtype == "BYTES" else f"TYPE_{spec.dtype}")
    message.dims.extend(spec.dims)
    if spec.optional and optional_ok:
        message.optional = True
    if label_file:
        message.label_filename = label_file


def _add_io(config: mc.ModelConfig, inputs, outputs, optional_ok: bool, labels: bool = False) -> None:
    for spec in inputs:
        _tensor(config.input.add(), spec, optional_ok)
    for spec in outputs:
        _tensor(config.output.add(), spec, label_file="labels.txt" if labels and spec.name == contract.PROBS else "")


def triton_parameters(meta: ModelMetadata | None = None, inputs: Sequence[TensorSpec] = ()) -> dict[str, str]:
    """config.pbtxt ``parameters`` carrying the contract into a model: the metadata (when
    given), the tensor names, the defaults of the optional ``inputs`` and the accepted range
    of every numeric one (:data:`gatta.bounds.INPUT_BOUNDS`)."""
    params = {contract.PARAM_TENSORS: json.dumps(contract.tensor_roles()),
              contract.PARAM_DEFAULTS: json.dumps({t.name: contract.OPTIONAL_DEFAULTS[t.name]
                                                   for t in inputs if t.optional}),
              contract.PARAM_BOUNDS: json.dumps({t.name: INPUT_BOUNDS[t.name].to_dict()
                                                 for t in inputs if t.name in INPUT_BOUNDS})}
    if meta is not None:
        params[contract.PARAM_METADATA] = meta.to_json()
    return params


def _set_parameters(config: mc.ModelConfig, params: dict[str, str]) -> None:
    for key, value in params.items():
        config.parameters[key].string_value = value


def _text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def read_config(path: Path) -> mc.ModelConfig:
    """Parse a config.pbtxt with Triton's schema (raises text_format.ParseError)."""
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def model_config(meta: ModelMetadata, opts: RepositoryOptions) -> mc.ModelConfig:
    if opts.flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {opts.flavour!r}; choose one of {', '.join(FLAVOURS)}")
    if opts.device not in DEVICES:
        raise ValueError(f"unknown device {opts.device!r}; choose one of {', '.join(DEVICES)}")
    native = opts.flavour == "onnxruntime"
    config = mc.ModelConfig(name=opts.name, max_batch_size=opts.max_batch)
    if native:
        config.platform, config.backend = "onnxruntime_onnx", "onnxruntime"
    else:
        config.backend = "python"
    _add_io(config, meta.inputs, meta.outputs, optional_ok=not native, labels=True)
    # python flavour on a GPU: the model runs ONNX Runtime's CUDA provider on the GPU Triton
    # gives each instance (templates/classifier_model.py)
    gpu = native or opts.device == "gpu"
    config.instance_group.add(count=resolve_instances(opts.instances, opts.flavour, opts.device),
                              kind=mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU)
    if opts.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = opts.queue_delay_us
    if native and opts.tensorrt_fp16:
        trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        trt.parameters["precision_mode"] = "FP16"
        trt.parameters["max_workspace_size_bytes"] = "1073741824"
    if native and opts.warmup:
        warmup = config.model_warmup.add(name="warmup_batch1", batch_size=1)
        for spec in meta.inputs:
            feed = warmup.inputs[spec.name]
            feed.data_type, feed.dims[:] = mc.TYPE_FP32, spec.dims
            # the warm-up bias is the default (zeros); random masks exercise every layer
            if spec.name == contract.QUERY_BIAS:
                feed.zero_data = True
            else:
                feed.random_data = True
    params = triton_parameters(dataclasses.replace(meta, flavour=opts.flavour), meta.inputs)
    if not native:
        params["intra_op_threads"] = _threads(opts.threads)
        if opts.graph != contract.GRAPH_FILE:
            params[contract.PARAM_GRAPH] = opts.graph
    _set_parameters(config, params)
    return config


def preprocess_config(meta: ModelMetadata, opts: RepositoryOptions) -> mc.ModelConfig:
    config = mc.ModelConfig(name=opts.name + contract.PREPROCESS_SUFFIX, backend="python",
                            max_batch_size=opts.max_batch)
    _add_io(config, [contract.IMAGE_BYTES_SPEC, *meta.optional_inputs], meta.inputs, optional_ok=True)
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    config.dynamic_batching.max_queue_delay_microseconds = opts.queue_delay_us
    params = triton_parameters(None, meta.inputs)
    params[contract.PARAM_IMAGE_SIZE] = str(meta.image_size)
    params[contract.PARAM_PREPROCESSING] = json.dumps(meta.preprocessing.to_dict())
    _set_parameters(config, params)
    return config


def ensemble_config(meta: ModelMetadata, opts: RepositoryOptions) -> mc.ModelConfig:
    config = mc.ModelConfig(name=opts.name + contract.ENCODED_SUFFIX, platform="ensemble",
                            max_batch_size=opts.max_batch)
    inputs = [contract.IMAGE_BYTES_SPEC, *meta.optional_inputs]
    _add_io(config, inputs, meta.outputs, optional_ok=True)
    pre = config.ensemble_scheduling.step.add(model_name=opts.name + contract.PREPROCESS_SUFFIX, model_version=-1)
    main = config.ensemble_scheduling.step.add(model_name=opts.name, model_version=-1)
    for spec in inputs:
        pre.input_map[spec.name] = spec.name
    for spec in meta.inputs:  # internal tensors between the two steps: _image, _lesion_mask...
        pre.output_map[spec.name] = main.input_map[spec.name] = f"_{spec.name}"
    for spec in meta.outputs:
        main.output_map[spec.name] = spec.name
    return config


def _template(filename: str) -> str:
    return resources.files("gatta.export").joinpath("templates", filename).read_text()


def shared_source(module: str) -> str:
    """The source of gatta/<module>.py, as pasted into a model."""
    return resources.files("gatta").joinpath(f"{module}.py").read_text()


def decoder_source() -> str:
    return shared_source("decoder")


def model_source(template: str) -> str:
    """A python-backend model's model.py: templates/<template> with each of its PASTED modules'
    source in place of that module's marker line."""
    text = _template(template)
    for module in PASTED[template]:
        marker = PASTE_MARKER.format(module)
        if text.count(marker) != 1:
            raise RuntimeError(f"templates/{template} must hold the line {marker!r} once")
        pasted = (f"# ---- gatta/{module}.py, pasted by gatta-export (edit it there) ".ljust(88, "-") + "\n"
                  + shared_source(module).rstrip("\n") + "\n" + f"# ---- end of gatta/{module}.py ".ljust(88, "-"))
        text = text.replace(marker, pasted)
    return text


def preprocess_model_source() -> str:
    """The preprocessing model's model.py: its template with the shared decoder copied in."""
    return model_source("preprocess_model.py")


def classifier_model_source() -> str:
    """The classifier's model.py (python flavour): its template with the shared metrics table,
    guards and core count copied in."""
    return model_source("classifier_model.py")


def write_repository(staging: Path, meta: ModelMetadata, onnx_file: Path, opts: RepositoryOptions,
                     cpu_graph: Path | None = None) -> list[Path]:
    """Lay the model out under ``staging`` (an empty folder); returns the files written.
    ``cpu_graph``: the graph a python-flavour GPU export's CPU twin (configs/cpu.pbtxt) loads
    instead of ``onnx_file`` (export/cpu_layout.py)."""
    model_dir = staging / opts.name
    version_dir = model_dir / str(opts.version)
    version_dir.mkdir(parents=True)
    shutil.copyfile(onnx_file, version_dir / contract.GRAPH_FILE)
    twin_graph = contract.GRAPH_FILE
    if cpu_graph is not None and opts.flavour == "python" and opts.device == "gpu":
        shutil.copyfile(cpu_graph, version_dir / contract.CPU_GRAPH_FILE)
        twin_graph = contract.CPU_GRAPH_FILE
    (model_dir / "config.pbtxt").write_text(_text(model_config(meta, opts)))
    (model_dir / "labels.txt").write_text("\n".join(meta.labels) + "\n")
    if opts.flavour == "python":
        (version_dir / "model.py").write_text(classifier_model_source())
        if opts.device == "gpu":
            (model_dir / "configs").mkdir()
            cpu = model_config(meta, dataclasses.replace(opts, device="cpu", graph=twin_graph))
            (model_dir / "configs" / f"{contract.CPU_CONFIG_NAME}.pbtxt").write_text(_text(cpu))
    if opts.encoded:
        pre = staging / (opts.name + contract.PREPROCESS_SUFFIX)
        (pre / "1").mkdir(parents=True)
        (pre / "1" / "model.py").write_text(preprocess_model_source())
        (pre / "config.pbtxt").write_text(_text(preprocess_config(meta, opts)))
        ens = staging / (opts.name + contract.ENCODED_SUFFIX)
        (ens / "1").mkdir(parents=True)
        (ens / "config.pbtxt").write_text(_text(ensemble_config(meta, opts)))
    return sorted(p for p in staging.rglob("*") if p.is_file())
