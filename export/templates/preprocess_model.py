"""Triton python-backend model: encoded JPEG/PNG bytes -> the classifier's input tensors.

Decodes with gattanet's one image decoder (EXIF orientation, RGB, the model's recorded
preprocessing: a squash or torchvision's resize + centre crop to the square input, pixels in
[0, 1]; copied in below by gatta-export) and fills the optional inputs with their defaults when
absent so the classifier behind it always receives them. Tensor names, defaults and the
preprocessing come from this model's config.pbtxt parameters. A corrupt,
non-image or oversized payload fails only its own request. Self-contained: numpy, Pillow and
triton_python_backend_utils.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

# @@gatta.decoder@@

MAX_BYTES = 20_000_000  # encoded size refused before decoding


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        # repositories exported before the preprocessing was recorded squash to image_size
        self.preprocessing = (Preprocessing.from_dict(json.loads(params["preprocessing"]))
                              if "preprocessing" in params else Preprocessing(int(params["image_size"])))
        self.names = json.loads(params["tensors"])
        self.defaults = json.loads(params["defaults"])
        self.dims = {o["name"]: [int(d) for d in o["dims"]] for o in config["output"]}

    def image(self, blob):
        """One encoded picture -> float32 [3, S, S] in [0, 1], as the client and training see it."""
        return to_float(decode_image(bytes(blob), self.preprocessing, MAX_BYTES))

    def _one(self, request):
        blobs = pb_utils.get_input_tensor_by_name(request, self.names["image_bytes"]).as_numpy().reshape(-1)
        images = np.stack([self.image(b) for b in blobs])
        out = [pb_utils.Tensor(self.names["image"], images)]
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
            except ValueError as exc:  # DecodeError included
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)))
        return responses
