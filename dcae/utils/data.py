"""Data-loading helper shared by the VAE and TTS trainers."""
from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def infinite_batches(loader: DataLoader, sampler: DistributedSampler | None, epoch: int) -> Iterator:
    """Yield batches from ``loader`` forever, calling ``sampler.set_epoch`` at the start of each epoch
    (counted from ``epoch``) so a distributed sampler reshuffles every pass."""
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1
