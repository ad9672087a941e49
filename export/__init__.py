"""Checkpoint -> verified ONNX -> Triton model repository.

``signature`` describes a checkpoint's model as the contract's ``ModelMetadata`` (which fixes
every served tensor); ``onnx_graph`` traces both passes into one graph; ``verify`` checks it
against PyTorch; ``repository`` writes both Triton flavours and the encoded-image ensemble with
Triton's own config schema (``templates/`` holds the self-contained python-backend models; the
shared image decoder is copied into the preprocessing one);
``exporter`` does it all or nothing; ``cli`` is ``gatta-export``.
"""
