"""Test-only Triton python model: a request that stays in flight until the test releases it.

execute() creates the file named by the `started` parameter, then waits (at most 120 s) for the
file named by `release` to exist, and answers y = x + 1. Lets a test prove a request is in
flight when it sends a signal, without timing guesses."""

import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        self.started, self.release = params["started"], params["release"]

    def execute(self, requests):
        open(self.started, "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(self.release) and time.monotonic() < deadline:
            time.sleep(0.01)
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy() + np.float32(1))])
            for r in requests]
