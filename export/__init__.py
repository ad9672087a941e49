"""Checkpoint -> verified ONNX -> Triton model repository.

``signature`` describes the served tensors once; ``onnx_graph`` traces both passes into one
graph; ``verify`` checks it against PyTorch; ``repository`` writes both Triton flavours and the
encoded-image ensemble (``templates/`` holds the self-contained python-backend models);
``exporter`` does it all or nothing; ``benchmark`` times graphs; ``cli`` is ``gatta-export``.
"""
