"""The GAttANet model and its training.

``config.GattaConfig`` describes a model; ``model.GattaNet`` builds it (``backbones`` cut the
frozen CNN into stages at the attached layers, ``head.AttentionHead`` holds K, Q and alpha);
``data`` loads datasets into memory; ``train.fit`` trains a backbone or a head;
``checkpoint`` saves and loads self-describing checkpoints; ``evaluate`` and ``report`` run
the paper's analyses; ``cli`` is ``gatta-train``.
"""
