"""Triton python-backend model: encoded JPEG/PNG bytes -> the classifier's input tensors.

Decodes, applies EXIF orientation, converts to RGB and resizes to the model's square input
(pixels in [0, 1]); fills `lesion_mask` / `query_bias` with their defaults when absent so the
classifier behind it always receives them. A corrupt, non-image or oversized payload fails
only its own request. Self-contained: numpy, Pillow and triton_python_backend_utils.
"""

import io
import json

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image, ImageOps

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them
MAX_BYTES = 20_000_000


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.size = int(params["image_size"])
        self.defaults = json.loads(params["defaults"])
        self.dims = {o["name"]: [int(d) for d in o["dims"]] for o in config["output"]}
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS

    def _decode(self, blob: bytes) -> np.ndarray:
        if len(blob) > MAX_BYTES:
            raise ValueError(f"encoded image is {len(blob)} bytes, limit {MAX_BYTES}")
        try:
            with Image.open(io.BytesIO(blob)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ValueError(f"image is {img.width}x{img.height} pixels, limit {MAX_PIXELS}")
                img = ImageOps.exif_transpose(img).convert("RGB")
                if img.size != (self.size, self.size):
                    img = img.resize((self.size, self.size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except ValueError:
            raise
        except Exception as exc:  # PIL raises many types for broken files
            raise ValueError(f"cannot decode image: {type(exc).__name__}: {exc}") from None
        return arr.transpose(2, 0, 1)

    def _one(self, request):
        blobs = pb_utils.get_input_tensor_by_name(request, "image_bytes").as_numpy().reshape(-1)
        images = np.stack([self._decode(bytes(b)) for b in blobs])
        out = [pb_utils.Tensor("image", images)]
        for name, value in self.defaults.items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                arr = np.full([len(blobs)] + self.dims[name], value, np.float32)
            else:
                arr = tensor.as_numpy().astype(np.float32)
                if list(arr.shape) != [len(blobs)] + self.dims[name]:
                    raise ValueError(f"input '{name}' has shape {list(arr.shape)}, expected {[len(blobs)] + self.dims[name]}")
            out.append(pb_utils.Tensor(name, arr))
        return pb_utils.InferenceResponse(output_tensors=out)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except ValueError as exc:
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)))
        return responses
