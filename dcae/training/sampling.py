"""Data order that a resumed run can continue exactly.

:class:`ResumableSampler` yields a seeded permutation per epoch (sharded over ranks like
``DistributedSampler``) and can start mid-epoch, so the batch after a restart is the batch the
uninterrupted run would have drawn. Datasets that draw random numbers per item (random crops)
set ``uses_item_seeds = True`` and then receive ``(index, seed)`` keys whose seed depends only on
(run seed, epoch, position): their randomness no longer depends on worker processes or restarts.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from dcae.seeds import mix_seed


class ResumableSampler(Sampler):
    """Indices of ``size`` items for one rank: shuffled per epoch with ``seed``, cut to equal shards.

    ``set_position(epoch, skip)`` selects the epoch and how many of this rank's items to skip.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 item_seeds: bool = False):
        if size < world_size:
            raise ValueError(f"{size} items cannot be shared by {world_size} processes")
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.item_seeds = item_seeds
        self.epoch = 0
        self.skip = 0

    def __len__(self) -> int:
        """Items per rank per epoch (before skipping)."""
        return self.size // self.world_size

    def set_position(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(mix_seed(self.seed, self.epoch)))
        else:
            order = torch.arange(self.size)
        mine = order[: len(self) * self.world_size][self.rank::self.world_size].tolist()
        for position in range(self.skip, len(mine)):
            index = mine[position]
            if self.item_seeds:
                yield index, mix_seed(self.seed, self.epoch, self.rank, position)
            else:
                yield index
