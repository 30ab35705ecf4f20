"""This process's place under ``torchrun`` (torch.distributed); rank 0 of 1 when run alone."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> Rank:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def share(self, total: int) -> int:
        """This rank's part of ``total`` (the first ``total % world`` ranks take one more)."""
        return total // self.world_size + (self.rank < total % self.world_size)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed() -> Rank:
    """Join torchrun's process group when launched by it (nccl on GPUs, gloo on CPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Rank.current()
