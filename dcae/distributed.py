"""torch.distributed setup shared by every entry point.

One code path for all scales: a plain ``python script.py`` is world size 1 with no process
group; under ``torchrun`` the environment (RANK, LOCAL_RANK, WORLD_SIZE) is read and a process
group is started (NCCL on GPU, gloo on CPU).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def pick_device(device: str | None = None, local_rank: int = 0) -> torch.device:
    """``None``/"auto" -> this rank's CUDA device when available, else CPU."""
    if device in (None, "", "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str | None = None) -> DistInfo:
    """Start the process group when launched by torchrun; return this process's rank and device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if rank == 0 and shared_store_with_restarts():
            print(SHARED_STORE_WARNING, file=sys.stderr)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


SHARED_STORE_WARNING = (
    "warning: torchrun restarts across nodes with its rendezvous store shared between rounds: a restarted rank can "
    "read the previous round's address of rank 0 and fail again; set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for "
    "torchrun on every node (docs/corpus.md, Many nodes)")


def shared_store_with_restarts() -> bool:
    """torchrun over several nodes with ``--max-restarts`` > 0 and its TCP store shared across rendezvous
    rounds (torch's default): a restarted group can meet stale keys of the previous round."""
    nodes = int(os.environ.get("WORLD_SIZE", "1")) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return (nodes > 1 and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0
            and os.environ.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "0") != "1")


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
