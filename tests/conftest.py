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
