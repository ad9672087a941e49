"""Shipped checkpoints (package data of ``gatta.models``).

``cifar10-toy-d16.pt``: the paper's toy CNN trained on CIFAR-10 here, with its d=16 GAttANet
head; training logs beside it. The default model of ``make demo``, ``gatta-serve`` and
``gatta-export``. Retrain with ``make train-default``.
"""

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("cifar10-toy-d16.pt")
