"""Talk to a Triton server hosting a gattanet model. Needs no torch.

    from gatta.client import GattaClient
    with GattaClient("localhost:8000") as client:
        for r in client.classify(["cat.jpg", "ship.png"]):
            print(r.source, r.label, r.prob)
"""

from .client import GattaClient
from .errors import ClientError, ServerUnreachable
from .images import ImageError, load_image
from .models import AmbiguousModel
from .results import Classification, ModelInfo

__all__ = ["GattaClient", "ClientError", "AmbiguousModel", "ServerUnreachable", "Classification", "ModelInfo", "ImageError", "load_image"]
