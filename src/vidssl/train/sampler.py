"""A sampler that is a pure function of (seed, global step), so a resumed run sees the same data.

Training is counted in optimiser steps, not epochs: the sampler yields an endless stream of
``(index, epoch)`` pairs for this process, epoch after epoch, starting at any global step. The
epoch travels with the index so the dataset can seed its per-item randomness from it without
``set_epoch`` calls that never reach persistent worker processes.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ResumableSampler", "steps_per_epoch"]


def steps_per_epoch(samples_per_epoch: int, batch_size: int, world_size: int) -> int:
    """Optimiser steps in one epoch of ``samples_per_epoch`` (incomplete last batch dropped)."""
    return max(1, samples_per_epoch // (batch_size * world_size))


class ResumableSampler(Sampler):
    def __init__(self, dataset_size: int, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, start_step: int = 0, samples_per_epoch: int | None = None):
        if dataset_size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.n = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.samples_per_epoch = samples_per_epoch or dataset_size
        self.steps_per_epoch = steps_per_epoch(self.samples_per_epoch, batch_size, world_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The global order of one epoch: enough shuffled passes over the data to fill it."""
        rng = np.random.default_rng([self.seed, epoch])
        passes = -(-self.samples_per_epoch // self.n)
        return np.concatenate([rng.permutation(self.n) for _ in range(passes)])[: self.samples_per_epoch]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        global_batch = self.batch_size * self.world_size
        while True:
            epoch, within = divmod(step, self.steps_per_epoch)
            order = self.epoch_order(epoch)
            for s in range(within, self.steps_per_epoch):
                chunk = order[s * global_batch:(s + 1) * global_batch]
                for i in chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]:
                    yield int(i), epoch
            step = (epoch + 1) * self.steps_per_epoch
