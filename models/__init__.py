"""Shipped checkpoints (package data of ``gatta.models``).

``cifar10-toy-d16.pt``: the paper's toy CNN trained on CIFAR-10 here (150 epochs, the rate
decaying on a cosine), with its d=16 GAttANet head; training logs beside it. The default model
of ``gatta-serve`` and ``gatta-export``. Retrain with ``make train-default``.
``cifar10-toy-backbone-p50.pt``: the same backbone trained with the paper's constant rate to
its patience-50 stopping rule (weights only; the baseline of docs/results.md's converged study).

``tiny-imagenet-resnet18-d8.pt``: a ResNet18 trained from scratch here on Tiny-ImageNet-200
(200 ImageNet classes, 64x64 pictures) with the paper's ResNet head, d=8; backbone weights in
half precision, with the FP32 model's answers on 16 validation pictures that every export
verifies against (training/shipping.py); training logs beside it. Retrain with
``scripts/train_tiny_imagenet.sh``.

``make demo`` and ``make view`` serve both (:data:`BUNDLED`).
"""

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("cifar10-toy-d16.pt")
TINY_IMAGENET_CHECKPOINT = Path(__file__).with_name("tiny-imagenet-resnet18-d8.pt")

# served name -> checkpoint, for the demo and the viewer
BUNDLED = {"cifar10": DEFAULT_CHECKPOINT, "tiny-imagenet": TINY_IMAGENET_CHECKPOINT}
