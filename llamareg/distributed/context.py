"""Which rank this process is, and the few collectives training needs.

One object carries this from the entry point to the trainer, so no code asks torch.distributed
directly whether it is rank 0.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and local rank; ``DistributedContext()`` is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this rank writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if torch.distributed.is_initialized():
            torch.distributed.barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (a one-item list in a single process)."""
        if not torch.distributed.is_initialized() or self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(values, value)
        return values


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def init_distributed(device_type: str) -> DistributedContext:
    """Join the process group the launcher (``deepspeed``, ``torchrun``) describes in the environment.

    A plain ``python launch/train.py --ds ...`` is a world of one: the variables the launcher would
    set are filled in (rendezvous on 127.0.0.1), so DeepSpeed does not go looking for MPI. The
    backend is NCCL on CUDA and gloo on the CPU, where each rank takes cores / local ranks threads
    unless ``OMP_NUM_THREADS`` says otherwise.
    """
    import deepspeed

    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if device_type == "cuda" else "gloo")
    context = DistributedContext(
        rank=torch.distributed.get_rank(),
        world_size=torch.distributed.get_world_size(),
        local_rank=int(os.environ["LOCAL_RANK"]),
    )
    if device_type == "cuda":
        torch.cuda.set_device(context.local_rank)
    else:
        threads = threads_per_rank(os.environ, os.cpu_count() or 1, context.world_size)
        if threads is not None:
            torch.set_num_threads(threads)
    return context


def threads_per_rank(environment: Mapping[str, str], cores: int, world_size: int) -> int | None:
    """CPU threads for one rank: its share of the machine's cores among the ranks on it (DeepSpeed's
    launcher sets ``LOCAL_SIZE``, torchrun ``LOCAL_WORLD_SIZE``); None when ``OMP_NUM_THREADS`` decides.

    Example:
        >>> threads_per_rank({"LOCAL_SIZE": "2"}, cores=16, world_size=4), threads_per_rank({"OMP_NUM_THREADS": "3"}, 16, 4)
        (8, None)
    """
    if "OMP_NUM_THREADS" in environment:
        return None
    local_ranks = int(environment.get("LOCAL_WORLD_SIZE") or environment.get("LOCAL_SIZE") or world_size)
    return max(1, cores // max(local_ranks, 1))
