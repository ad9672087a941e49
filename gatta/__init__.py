"""gattanet: GAttANet image classifiers, from training to Triton serving.

Subpackages follow the data flow: ``gatta.model`` (the network, its backbone families,
checkpoints; read by training and export alike) and ``gatta.training`` (data, training) ->
``gatta.export`` (checkpoint -> verified ONNX -> Triton model repository) ->
``gatta.serving`` (launch Triton, monitoring) -> ``gatta.client`` (talk to Triton).
Torch-free modules shared by all of them: ``gatta.contract`` (what crosses a room's wall:
tensor names, defaults, the model metadata schema), ``gatta.bounds`` (the accepted range of
each input), ``gatta.decoder`` (the one image decoder), ``gatta.lesion`` (the paper's lesion
notation) and ``gatta.extras`` (missing pip extras).
"""

__version__ = "0.1.0"
