"""The one place where ranks talk to each other.

Every cross-rank reduction (gradients, KL, normaliser statistics, advantage statistics) goes through
these helpers, so a single-process run pays nothing and a ``torchrun`` run needs no other changes.
The process group is joined by the first caller (``run_oracle.build`` joins before it builds the
env, so a rank is bound to its GPU first); it names no backend, so c10d uses gloo for CPU tensors
and NCCL for CUDA tensors.
"""

from __future__ import annotations

import os
import sys

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


def print0(*args, **kwargs) -> None:
    """``print`` on rank 0 only, so a message appears once however many ranks run."""
    if is_rank0():
        print(*args, **kwargs)


def init() -> None:
    """Join the process group if ``WORLD_SIZE`` > 1 and it is not joined yet.

    Naming NCCL whenever CUDA exists broke CPU-backend runs on GPU machines (NCCL cannot reduce
    CPU tensors); with no backend named, each tensor's device picks its own. NCCL needs one GPU
    per process, hence the binding to GPU ``LOCAL_RANK`` where it exists.
    """
    if world_size() > 1 and not dist.is_initialized():
        if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
            torch.cuda.set_device(local_rank())
        dist.init_process_group()


def leave() -> None:
    """End a rank's process once its command is done: wait for the others, leave the group and
    exit at once. Exiting normally ran C++ static destructors that, in about one exit in five,
    aborted a rank ("terminate called without an active exception", after Python had finished)
    and failed the whole torchrun launch."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` in place over all ranks and return it (no-op with one rank)."""
    if world_size() > 1:
        init()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= world_size()
    return tensor


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on at least one rank (the flag itself with one rank)."""
    if world_size() == 1:
        return flag
    return bool(all_reduce_mean(torch.tensor([float(flag)])).item() > 0)


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s copy (no-op with one rank)."""
    if world_size() > 1:
        init()
        dist.broadcast(tensor, src=src)
    return tensor


def all_reduce_grads(module: torch.nn.Module) -> None:
    """Average ``module``'s gradients over all ranks, in one flat all-reduce (no-op alone)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = all_reduce_mean(torch.cat([g.flatten() for g in grads]))
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(module: torch.nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (no-op alone)."""
    for tensor in module.state_dict().values():
        broadcast(tensor)
