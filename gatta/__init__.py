"""gattanet: GAttANet image classifiers, from training to Triton serving.

Subpackages follow the data flow: ``gatta.training`` (model, data, training) ->
``gatta.export`` (checkpoint -> verified ONNX -> Triton model repository) ->
``gatta.serving`` (launch Triton, monitoring) -> ``gatta.client`` (talk to Triton).
``gatta.lesion`` and ``gatta.extras`` are torch-free helpers shared by all of them.
"""

__version__ = "0.1.0"
