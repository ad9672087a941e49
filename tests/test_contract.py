"""The contract between the rooms: one metadata schema, names and defaults carried into
config.pbtxt, the class-direction sign rule, and the one image decoder seen the same way by
training, the client and the server-side preprocessing model."""

import ast
import io
import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from google.protobuf import json_format
from PIL import Image

from gatta import contract
from gatta.contract import LayerInfo, ModelMetadata, class_directions, prior_bias
from gatta.decoder import decode_image
from gatta.lesion import LesionError


def _meta(**kw) -> ModelMetadata:
    layers = [LayerInfo("conv1", "conv", [4, 4], 0.5), LayerInfo("fc", "dense", [3], -0.25)]
    kw.setdefault("class_keys", np.array([[0.1234567, 1.0], [-2.0, 0.5], [0.0, 3.0]], np.float32))
    return ModelMetadata(image_size=8, d=2, labels=["a", "b", "c"], layers=layers, **kw)


def test_metadata_json_round_trip_and_derived_tensors():
    meta = _meta(flavour="python")
    back = ModelMetadata.from_json(meta.to_json())
    assert back.layers == meta.layers and back.labels == meta.labels and back.flavour == "python"
    assert np.abs(back.class_keys - meta.class_keys).max() <= 5e-7  # 6 decimals on the wire
    assert json.loads(meta.to_json())["class_keys"][0] == [0.123457, 1.0]
    assert meta.input_names == ["image", "lesion_mask", "query_bias"]
    assert meta.output_names == ["logits", "probs", "q_avg", "gatta_conv1", "gatta_fc"]
    assert [t.dims for t in meta.inputs] == [(3, 8, 8), (2,), (2,)] and [t.optional for t in meta.inputs] == [False, True, True]
    base = ModelMetadata.from_json(_meta(baseline=True, class_keys=None).to_json())
    assert base.input_names == ["image"] and base.output_names == ["logits", "probs"] and base.class_keys is None


def test_lesion_notation_and_defaults():
    meta = _meta()
    assert meta.full_pattern == "cd"
    assert meta.lesion_mask("c.").tolist() == [1.0, 0.0] and meta.lesion_mask(None).tolist() == [1.0, 1.0]
    with pytest.raises(LesionError, match="2 attached layers"):
        meta.lesion_mask([1, 0, 1])
    assert contract.default_input("lesion_mask", 3, (2,)).tolist() == [[1.0, 1.0]] * 3
    assert not contract.default_input("query_bias", 1, (4,)).any()


def test_class_direction_sign_rule_and_prior_bias():
    keys = np.array([[3.0, 4.0], [1.0, 0.0]], np.float32)
    assert class_directions(keys, 0.7).tolist() == keys.tolist()
    assert class_directions(keys, -0.7).tolist() == (-keys).tolist()
    bias = prior_bias(keys, 0, 0.5)  # 0.5 * k / |k|^2: moves q_avg.k by exactly 0.5
    assert bias.dtype == np.float32 and float(bias @ keys[0]) == pytest.approx(0.5, abs=1e-6)


def test_a_gattanet_classifier_is_told_apart_in_every_form_its_config_comes_in():
    from tritonclient.grpc import model_config_pb2 as mc

    from gatta.export.repository import triton_parameters

    def config(name, params):
        cfg = mc.ModelConfig(name=name)
        for key, value in params.items():
            cfg.parameters[key].string_value = value
        return cfg

    meta = _meta()
    classifier = config("gatta", triton_parameters(meta, meta.inputs))
    others = [config("gatta_preprocess", triton_parameters(None, meta.inputs)),
              mc.ModelConfig(name="gatta_encoded", platform="ensemble")]
    as_json = lambda cfg: json_format.MessageToDict(cfg, preserving_proto_field_name=True)  # noqa: E731
    # config.pbtxt parsed, Triton's HTTP and gRPC (as_json) answers, the parameters alone
    for form in (lambda c: c, as_json, lambda c: {"config": as_json(c)}, lambda c: c.parameters,
                 lambda c: dict(c.parameters)):
        assert contract.is_gattanet_config(form(classifier))
        assert not any(contract.is_gattanet_config(form(other)) for other in others)
    assert contract.is_gattanet_config(triton_parameters(meta))
    assert all(contract.MODEL_NAME.fullmatch(n) for n in ("gatta", "resnet18-v2.1", "A_b", "7"))
    assert not any(contract.MODEL_NAME.fullmatch(n) for n in (".gatta-export-x", "-a", "a b", "a/b", "é", ""))


def _params(cfg):
    return {k: v.string_value for k, v in cfg.parameters.items()}


def test_exported_configs_carry_names_and_defaults(tiny_export):
    from gatta.export.repository import DECODER_MARKER, decoder_source, read_config, _template

    repo = tiny_export[0]
    classifier = read_config(repo / "gatta" / "config.pbtxt")
    pre = read_config(repo / "gatta_preprocess" / "config.pbtxt")
    for cfg in (classifier, pre):
        params = _params(cfg)
        assert json.loads(params["tensors"]) == contract.tensor_roles()
        assert json.loads(params["defaults"]) == {"lesion_mask": 1.0, "query_bias": 0.0}
    assert _params(pre)["image_size"] == "16"
    # what Triton's model-config endpoint returns is read back by the contract's own reader
    meta = ModelMetadata.from_model_config(json_format.MessageToDict(classifier, preserving_proto_field_name=True))
    assert meta.name == "gatta" and meta.max_batch_size == 8 and meta.flavour == "python"
    assert meta.output_names == [o.name for o in classifier.output] and meta.input_names == [i.name for i in classifier.input]
    # the preprocessing model carries the shared decoder's source verbatim, the template a marker only
    assert _template("preprocess_model.py").count(DECODER_MARKER) == 1
    written = (repo / "gatta_preprocess" / "1" / "model.py").read_text()
    assert decoder_source().rstrip("\n") in written and DECODER_MARKER not in written


def _top_level_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_shared_modules_are_pasted_into_the_triton_models_not_copied():
    from gatta.export.repository import PASTE_MARKER, PASTED, _template, model_source, shared_source

    # what a pasted module may import: it runs inside Triton, in the middle of model.py (where
    # `from __future__` is a SyntaxError)
    allowed = {"io", "dataclasses", "typing", "math", "os", "numpy", "PIL"}
    assert PASTED == {"preprocess_model.py": ("decoder",), "classifier_model.py": ("metrics", "guards", "cores")}
    for template, modules in PASTED.items():
        written = model_source(template)
        compile(written, template, "exec")
        assert "# @@gatta." not in written
        for module in modules:
            source = shared_source(module)
            tree = ast.parse(source)
            imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert imported <= allowed, f"gatta/{module}.py imports {imported - allowed}"
            assert _template(template).count(PASTE_MARKER.format(module)) == 1
            assert source.rstrip("\n") in written
            # a template that defines a name of its pasted module again holds a hand copy
            assert _top_level_names(_template(template)) & _top_level_names(source) == set(), (template, module)


def _exif_rotated_jpeg() -> bytes:
    """A 24x12 JPEG stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise)."""
    y, x = np.mgrid[0:12, 0:24]
    pixels = np.stack([x * 10, y * 20, (x + y) * 5], -1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def test_exif_rotated_jpeg_is_the_same_array_in_training_client_and_server(tmp_path, triton):
    from gatta.client import load_image
    from gatta.training.data import load_images

    blob = _exif_rotated_jpeg()
    (tmp_path / "data" / "cls").mkdir(parents=True)
    (tmp_path / "data" / "cls" / "photo.jpg").write_bytes(blob)
    training = load_images(tmp_path / "data", image_size=16).images[0].numpy().astype(np.float32) / 255
    client = load_image(blob, 16)
    t = httpclient.InferInput("image_bytes", [1, 1], "BYTES")
    t.set_data_from_numpy(np.array([[blob]], dtype=object))
    http = httpclient.InferenceServerClient(triton.http_url)
    result = http.infer("gatta_preprocess", [t])
    server = result.as_numpy("image")[0]
    assert result.as_numpy("lesion_mask").tolist() == [[1.0] * 5] and not result.as_numpy("query_bias").any()
    http.close()
    assert client.shape == server.shape == training.shape == (3, 16, 16)
    assert np.array_equal(training, client) and np.array_equal(client, server)
    # the orientation was applied: ignoring EXIF gives a different picture
    with Image.open(io.BytesIO(blob)) as img:
        sideways = np.asarray(img.convert("RGB").resize((16, 16), Image.BILINEAR), np.float32).transpose(2, 0, 1) / 255
    assert np.abs(sideways - client).max() > 0.2
    assert decode_image(blob).shape == (3, 24, 12)  # upright: 12 wide, 24 high
