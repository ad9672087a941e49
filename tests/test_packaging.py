"""One import namespace; the client never needs torch."""

import subprocess
import sys


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")


def test_bare_stage_packages_are_not_importable():
    for name in ("export", "model", "training", "client", "serving", "bench", "models"):
        r = python(f"import {name}")
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, name


def test_client_imports_without_torch():
    block = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'onnx', 'onnxruntime'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import gatta.client, gatta.lesion, gatta.client.models, gatta.client.inputs, gatta.client.maps, gatta.client.viewer\n"
        "print('ok', 'torch' in sys.modules)\n"
    )
    r = python(block)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok False"


def test_missing_extra_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from gatta.extras import require\n"
        "require('torch', 'train')\n"
    )
    r = python(code)
    assert "pip install 'gattanet[train]'" in r.stderr


def test_serving_and_client_commands_import_without_torch_onnx_or_nvidia_pytriton():
    """The Docker image installs gattanet without extras beside onnxruntime-gpu: gatta-serve and
    gatta-client (its HEALTHCHECK) must import with none of torch, onnx, onnxruntime, pytriton."""
    block = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'onnx', 'onnxruntime', 'pytriton'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import gatta.serving.cli, gatta.client.cli\n"
        "from gatta.serving.devices import cuda_provider_available\n"
        "print('ok', cuda_provider_available())\n"
    )
    r = python(block)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok False"


def test_export_loads_the_model_room_and_no_training_code():
    """gatta.export reads checkpoints through gatta.model; the trainer's modules stay out."""
    out = python("import sys, gatta.export.cli, gatta.export.exporter, gatta.model.checkpoint\n"
                 "print(sorted(m for m in sys.modules if m.startswith('gatta.training')))\n"
                 "print('gatta.model.families' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
