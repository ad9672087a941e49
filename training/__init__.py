"""Training GAttANets (the model itself is :mod:`gatta.model`).

``data``, ``layouts`` and ``streaming`` load datasets (in memory or streamed); ``train.fit``
trains a backbone or a head; ``runs`` turns a command's options into a run; ``evaluate``,
``compare`` and ``report`` run the paper's analyses; ``shipping`` writes the shipped checkpoint;
``cli`` is ``gatta-train``.
"""
