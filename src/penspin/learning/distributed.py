"""The one place where ranks talk to each other.

Every cross-rank reduction (gradients, KL, normaliser statistics, advantage statistics) goes through
these helpers, so a single-process run pays nothing and a ``torchrun`` run needs no other changes.
The process group is created lazily on first use: NCCL on CUDA, gloo otherwise.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of ranks as set by ``torchrun`` (1 when ``WORLD_SIZE`` is unset)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 when ``RANK`` is unset)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """Rank within this machine, the index of the GPU this rank should use."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_rank0() -> bool:
    """Only rank 0 logs and writes files."""
    return rank() == 0


def init() -> None:
    """Join the process group if ``WORLD_SIZE`` > 1 and it is not joined yet."""
    if world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` in place over all ranks and return it (no-op with one rank)."""
    if world_size() > 1:
        init()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= world_size()
    return tensor


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s copy (no-op with one rank)."""
    if world_size() > 1:
        init()
        dist.broadcast(tensor, src=src)
    return tensor
