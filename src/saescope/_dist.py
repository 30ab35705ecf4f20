"""This process's place under ``torchrun`` (torch.distributed); rank 0 of 1 when run alone."""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import Tensor


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

    def all_gather(self, tensor: Tensor) -> Tensor:
        """Every rank's ``tensor`` concatenated in rank order (same shape on every rank)."""
        if self.world_size == 1:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def average_gradients_(self, params: Iterable[Tensor], counts: Tensor) -> Tensor:
        """Average gradients over ranks in place; returns ``counts`` summed over ranks."""
        if self.world_size == 1:
            return counts
        for param in params:
            if param.grad is not None:
                dist.all_reduce(param.grad)
                param.grad /= self.world_size
        counts = counts.clone()
        dist.all_reduce(counts)
        return counts


def init_distributed() -> Rank:
    """Join torchrun's process group when launched by it (nccl on GPUs, gloo on CPUs)."""
    if launched_by_torchrun() and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # Tear the group down before the interpreter does: gloo's threads still alive at exit
        # abort the process ("terminate called without an active exception"), now and then.
        atexit.register(_leave)
    return Rank.current()


def leave_distributed() -> None:
    """Leave torchrun's process group once every rank got here (call at the end of a good run).

    The barrier matters: a rank that tears its gloo pairs down while its peer still has work in
    flight on them makes the peer's I/O thread throw, and the peer aborts ("terminate called
    without an active exception"). After the barrier nothing is in flight."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def end_worker(code: int = 0) -> NoReturn:
    """End a torchrun worker now: leave the group, flush, and skip interpreter teardown.

    Even after a clean ``destroy_process_group`` a gloo worker sometimes aborts while the
    interpreter and C++ statics are torn down (``terminate called without an active exception``,
    SIGABRT: 2 runs in 40 of the two-rank training test under load), which torchrun reports as
    a failed run although every file was written. Everything saescope writes is closed or
    renamed into place before this point, so there is nothing left for teardown to do."""
    if code == 0:
        leave_distributed()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _leave() -> None:
    # The fallback at exit, with no barrier: after an error on one rank the others may sit in
    # another collective and would wait forever.
    if dist.is_initialized():
        dist.destroy_process_group()
