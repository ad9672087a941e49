"""The GAttANet model, its own room: read by training and export alike, and importing no
training code.

``config.GattaConfig`` describes a model; ``network.GattaNet`` builds it: ``families`` describe
each backbone family once (how to build it, where the head attaches by ``attach``'s rule, its
preprocessing, recipes and d), ``backbones`` holds the staged backbone and the toy CNN,
``head.AttentionHead`` holds K, Q and alpha. ``checkpoint`` saves and loads self-describing
checkpoints, ``reference`` the FP32 answers a shipped one carries, ``recipe`` the training
recipes as data (the named ones and each family's defaults).
"""
