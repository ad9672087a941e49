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
    # one instance (threads auto): a raw SIGTERM (test_sigterm_*) must unload it within Triton's
    # short exit timeout, which two stubs exceeded on a busy 2-core host; gatta-serve drains first
    export_checkpoint(ckpt, ExportOptions(out=root / "repo", flavour="python", device="gpu", max_batch=8,
                                          instances=1))
    return root / "repo", ckpt


@pytest.fixture(scope="session")
def triton(tiny_export):
    """A real tritonserver on free loopback ports, shared by the serving and client tests."""
    from gatta.serving.launcher import start_server

    server = start_server(tiny_export[0], log_path=tiny_export[0].parent / "triton.log", wait=180)
    yield server
    server.stop()


BETA_CLASSES = ["apple", "bee", "cloud", "drum", "egg", "fern", "gate"]


@pytest.fixture(scope="session")
def two_models(tmp_path_factory):
    """Two GAttANets in one repository, as `gatta-serve --ckpt alpha=... --ckpt beta=...` builds
    it: alpha, the toy backbone (4 classes, 16x16 input, d=8, layers cccdd), and beta, a ResNet18
    with the paper's head (7 named classes, 32x32 input with ImageNet's resize + centre crop, d=4,
    layers ccccdd: stem, layer1-3, avgpool, logits), so labels, input size, preprocessing, the
    layer list and every map's shape differ. Returns (repository, {name: checkpoint})."""
    from gatta.serving.default_model import models_repository, named_checkpoints
    from gatta.model.config import IMAGENET_MEAN, IMAGENET_STD, imagenet_preprocessing

    from helpers import make_checkpoint

    root = tmp_path_factory.mktemp("two")
    alpha = make_checkpoint(root / "alpha.pt", num_classes=4, d=8, image_size=16, alpha=0.8)
    beta = make_checkpoint(root / "beta.pt", backbone="resnet18", num_classes=7, d=4, image_size=32, alpha=-0.6,
                           seed=1, class_names=BETA_CLASSES, qk_batchnorm=True, gatta_layernorm=True,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD, preprocessing=imagenet_preprocessing(32))
    models = named_checkpoints([f"alpha={alpha}", f"beta={beta}"])
    return models_repository(models, "python", echo=lambda m: None), models


@pytest.fixture(scope="session")
def two_model_triton(two_models, tmp_path_factory):
    """A real tritonserver serving both models of ``two_models``."""
    from gatta.serving.launcher import start_server

    log = tmp_path_factory.mktemp("two-log") / "triton.log"
    server = start_server(two_models[0], log_path=log, wait=180)
    yield server
    server.stop()
