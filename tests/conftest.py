import os

import pytest

os.environ.setdefault("GATTA_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "test"))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "requires_cuda" in item.keywords and not has_cuda:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny GAttANet (4 classes, 16x16 input, d=8) exported as the Docker image bakes its model:
    python flavour for a GPU (KIND_GPU), served here on its CPU twin (configs/cpu.pbtxt)."""
    from gatta.export.exporter import ExportOptions, export_checkpoint

    from helpers import make_checkpoint

    root = tmp_path_factory.mktemp("served")
    ckpt = make_checkpoint(root / "tiny.pt", num_classes=4, d=8, image_size=16, alpha=0.8)
    export_checkpoint(ckpt, ExportOptions(out=root / "repo", flavour="python", device="gpu", max_batch=8))
    return root / "repo", ckpt


@pytest.fixture(scope="session")
def triton(tiny_export):
    """A real tritonserver on free loopback ports, shared by the serving and client tests."""
    from gatta.serving.launcher import start_server

    server = start_server(tiny_export[0], log_path=tiny_export[0].parent / "triton.log", wait=180)
    yield server
    server.stop()
