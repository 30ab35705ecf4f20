"""Streaming top-k: the k largest values per unit (neuron or feature) over any number of rows,
in memory bounded by (units x k). Shared by the neuron views and the feature index."""

from __future__ import annotations

import torch
from torch import Tensor


class StreamingTopK:
    """Keeps, for each of ``units`` columns, the ``k`` largest values seen and their row ids."""

    def __init__(self, units: int, k: int) -> None:
        self.k = k
        self.values = torch.full((units, k), float("-inf"))
        self.ids = torch.full((units, k), -1, dtype=torch.long)

    def update(self, acts: Tensor, row_ids: Tensor) -> None:
        """``acts`` (N, units) for rows ``row_ids`` (N,)."""
        acts = acts.detach().float().cpu()
        take = min(self.k, len(acts))
        if take == 0:
            return
        values, where = acts.topk(take, dim=0)  # (take, units)
        candidates = torch.cat([self.values, values.t()], dim=1)  # (units, k + take)
        ids = torch.cat([self.ids, row_ids.cpu()[where].t()], dim=1)
        self.values, order = candidates.topk(self.k, dim=1)
        self.ids = ids.gather(1, order)
