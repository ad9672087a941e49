"""Which pictures each rank trains on, in which order: one plan for in-memory and streamed data.

:func:`epoch_plan` is a DistributedSampler-style split under ``torchrun``: seeded, every picture
exactly once per epoch across ranks, the same number of steps on every rank. The order depends
only on (seed, epoch), so a run resumed at an epoch boundary sees the order an uninterrupted run
would. :class:`ShardedBatches` hands it to a DataLoader as a batch sampler.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler


def epoch_plan(indices: torch.Tensor, epoch: int, seed: int, batch_size: int, rank: int = 0,
               world: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """This rank's batches for one epoch, in memory and streamed. The epoch's order is a
    ``randperm`` seeded by seed * 100003 + epoch (drawn from ``generator`` when given: the
    batch augmentation goes on drawing from it). Each step takes ``batch_size * world``
    pictures and deals them out ``[rank::world]``. A last step too small to give every rank a
    picture joins the one before, so all ranks take the same number of steps (DDP hangs
    otherwise) and every picture is seen exactly once. One rank: the order in batches of
    ``batch_size``."""
    if len(indices) < world:
        raise ValueError(f"{len(indices)} training images cannot be shared by {world} ranks")
    g = (generator or torch.Generator()).manual_seed(seed * 100003 + epoch)
    order = indices[torch.randperm(len(indices), generator=g)]
    step = batch_size * world
    steps = max(1, math.ceil(len(order) / step))
    if steps > 1 and len(order) - (steps - 1) * step < world:
        steps -= 1
    bounds = [k * step for k in range(steps)] + [len(order)]
    return [order[a:b][rank::world] for a, b in zip(bounds, bounds[1:])]


class ShardedBatches(Sampler):
    """Batch sampler over ``indices`` for one rank (see :func:`epoch_plan`); call
    ``set_epoch`` before each epoch, as with ``DistributedSampler``."""

    def __init__(self, indices: torch.Tensor, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0):
        self.indices, self.batch_size, self.rank, self.world, self.seed = indices, batch_size, rank, world, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        plan = epoch_plan(self.indices, self.epoch, self.seed, self.batch_size, self.rank, self.world)
        return (batch.tolist() for batch in plan)

    def __len__(self) -> int:
        return len(epoch_plan(self.indices, self.epoch, self.seed, self.batch_size, self.rank, self.world))
