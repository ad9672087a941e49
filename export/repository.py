"""Write a Triton model repository from a verified ONNX file and its signature.

    <out>/
      <name>/                 the classifier (flavour: onnxruntime or python)
        config.pbtxt
        labels.txt            Triton's classification extension, on the `probs` output
        <version>/model.onnx  (python flavour: also <version>/model.py)
      <name>_preprocess/      python: encoded JPEG/PNG bytes -> image tensor
      <name>_encoded/         ensemble: image_bytes -> <name>_preprocess -> <name>

Both flavours come from the same ModelSignature, so their tensors are identical. Triton's
onnxruntime backend refuses optional inputs on batching models, so there `lesion_mask` and
`query_bias` are required (clients send ones/zeros); in the python flavour they are optional.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from .signature import ModelSignature, TensorSpec

FLAVOURS = ("onnxruntime", "python")


def _dims(dims) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensor(spec: TensorSpec, optional_ok: bool, label_file: str | None = None) -> str:
    lines = [f'    name: "{spec.name}"', f"    data_type: TYPE_{'STRING' if spec.dtype == 'BYTES' else spec.dtype}",
             f"    dims: {_dims(spec.dims)}"]
    if spec.optional and optional_ok:
        lines.append("    optional: true")
    if label_file:
        lines.append(f'    label_filename: "{label_file}"')
    return "  {\n" + "\n".join(lines) + "\n  }"


def _io_block(kind: str, specs, optional_ok: bool, labels: bool = False) -> str:
    body = ",\n".join(_tensor(s, optional_ok, "labels.txt" if labels and s.name == "probs" else None) for s in specs)
    return f"{kind} [\n{body}\n]"


def _parameters(params: dict[str, str]) -> str:
    return "\n".join(
        f'parameters {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}' for k, v in params.items()
    )


def metadata_json(signature: ModelSignature, flavour: str) -> str:
    """What a client needs beyond tensor shapes, carried in config.pbtxt `parameters`."""
    return json.dumps({
        "flavour": flavour, "image_size": signature.image_size, "d": signature.d,
        "layers": signature.layers, "labels": signature.labels, "baseline": signature.baseline,
        "class_keys": [[round(v, 6) for v in row] for row in signature.class_keys],
    }, separators=(",", ":"))


def model_config(signature: ModelSignature, name: str, flavour: str, max_batch: int,
                 threads: int = 1, tensorrt_fp16: bool = False, warmup: bool = True,
                 dynamic_batching: bool = True, instances: int = 1) -> str:
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")
    native = flavour == "onnxruntime"
    head = [f'name: "{name}"']
    head += ['platform: "onnxruntime_onnx"', 'backend: "onnxruntime"'] if native else ['backend: "python"']
    head.append(f"max_batch_size: {max_batch}")
    parts = ["\n".join(head),
             _io_block("input", signature.inputs, optional_ok=not native),
             _io_block("output", signature.outputs, optional_ok=False, labels=True),
             f"instance_group [ {{ count: {instances} kind: {'KIND_GPU' if native else 'KIND_CPU'} }} ]"]
    if dynamic_batching:
        parts.append("dynamic_batching { max_queue_delay_microseconds: 200 }")
    if native and tensorrt_fp16:
        parts.append(
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {\n"
            '  name: "tensorrt"\n  parameters { key: "precision_mode" value: "FP16" }\n'
            '  parameters { key: "max_workspace_size_bytes" value: "1073741824" }\n} ] } }')
    if native and warmup:
        feeds = "\n".join(
            f'    inputs {{ key: "{s.name}" value: {{ data_type: TYPE_FP32 dims: {_dims(s.dims)} '
            f"{'random_data: true' if s.name == 'image' else ('zero_data: true' if s.name == 'query_bias' else 'random_data: true')} }} }}"
            for s in signature.inputs)
        parts.append(f'model_warmup [ {{\n    name: "warmup_batch1"\n    batch_size: 1\n{feeds}\n}} ]')
    params = {"gatta": metadata_json(signature, flavour)}
    if not native:
        params["intra_op_threads"] = str(threads)
    parts.append(_parameters(params))
    return "\n".join(parts) + "\n"


def preprocess_config(signature: ModelSignature, name: str, max_batch: int) -> str:
    image_bytes = TensorSpec("image_bytes", "BYTES", (1,))
    optional_inputs = [s for s in signature.inputs if s.optional]
    parts = [f'name: "{name}_preprocess"\nbackend: "python"\nmax_batch_size: {max_batch}',
             _io_block("input", [image_bytes, *optional_inputs], optional_ok=True),
             _io_block("output", signature.inputs, optional_ok=False),
             "instance_group [ { count: 1 kind: KIND_CPU } ]",
             "dynamic_batching { max_queue_delay_microseconds: 200 }",
             _parameters({"image_size": str(signature.image_size),
                          "defaults": json.dumps({s.name: (1.0 if s.name == "lesion_mask" else 0.0) for s in optional_inputs})})]
    return "\n".join(parts) + "\n"


def ensemble_config(signature: ModelSignature, name: str, max_batch: int) -> str:
    optional_inputs = [s for s in signature.inputs if s.optional]
    inputs = [TensorSpec("image_bytes", "BYTES", (1,)), *optional_inputs]
    pre_in = "\n".join(f'      input_map {{ key: "{s.name}" value: "{s.name}" }}' for s in inputs)
    pre_out = "\n".join(f'      output_map {{ key: "{s.name}" value: "_{s.name}" }}' for s in signature.inputs)
    main_in = "\n".join(f'      input_map {{ key: "{s.name}" value: "_{s.name}" }}' for s in signature.inputs)
    main_out = "\n".join(f'      output_map {{ key: "{s.name}" value: "{s.name}" }}' for s in signature.outputs)
    parts = [f'name: "{name}_encoded"\nplatform: "ensemble"\nmax_batch_size: {max_batch}',
             _io_block("input", inputs, optional_ok=True),
             _io_block("output", signature.outputs, optional_ok=False),
             "ensemble_scheduling {\n  step [\n"
             f'    {{\n      model_name: "{name}_preprocess"\n      model_version: -1\n{pre_in}\n{pre_out}\n    }},\n'
             f'    {{\n      model_name: "{name}"\n      model_version: -1\n{main_in}\n{main_out}\n    }}\n  ]\n}}']
    return "\n".join(parts) + "\n"


def _template(filename: str) -> str:
    return resources.files("gatta.export").joinpath("templates", filename).read_text()


def write_repository(staging: Path, signature: ModelSignature, onnx_file: Path, name: str,
                     version: int, flavour: str, max_batch: int, threads: int = 1,
                     tensorrt_fp16: bool = False, encoded: bool = True, dynamic_batching: bool = True,
                     instances: int = 1) -> list[Path]:
    """Lay the model out under ``staging`` (an empty folder); returns the files written."""
    model_dir = staging / name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True)
    shutil.copyfile(onnx_file, version_dir / "model.onnx")
    (model_dir / "config.pbtxt").write_text(model_config(signature, name, flavour, max_batch, threads, tensorrt_fp16,
                                                                 dynamic_batching=dynamic_batching, instances=instances))
    (model_dir / "labels.txt").write_text("\n".join(signature.labels) + "\n")
    if flavour == "python":
        (version_dir / "model.py").write_text(_template("classifier_model.py"))
    if encoded:
        pre = staging / f"{name}_preprocess"
        (pre / "1").mkdir(parents=True)
        (pre / "1" / "model.py").write_text(_template("preprocess_model.py"))
        (pre / "config.pbtxt").write_text(preprocess_config(signature, name, max_batch))
        ens = staging / f"{name}_encoded"
        (ens / "1").mkdir(parents=True)
        (ens / "config.pbtxt").write_text(ensemble_config(signature, name, max_batch))
    return sorted(p for p in staging.rglob("*") if p.is_file())
