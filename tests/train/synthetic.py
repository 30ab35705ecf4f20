"""Synthetic superposition data with a known dictionary (as in ../shared/bench/peer_harness.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class Superposition:
    """x = sum_j a_j D_j + noise: m unit directions in d dims, ~l0 active per row, Zipf-like."""

    def __init__(self, d: int, m: int, l0: int, seed: int = 0, noise: float = 0.01) -> None:
        g = torch.Generator().manual_seed(seed)
        D = torch.randn(m, d, generator=g)
        self.D = D / D.norm(dim=1, keepdim=True)  # (m, d)
        p = 1.0 / torch.arange(1, m + 1, dtype=torch.float64) ** 0.3
        self.p = (p / p.sum()).float()
        self.d, self.m, self.l0, self.seed, self.noise = d, m, l0, seed, noise

    def batch(self, index: int, B: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        ids = torch.multinomial(self.p, B * self.l0, replacement=True, generator=g).view(B, self.l0)
        mag = torch.empty(B, self.l0).exponential_(1.0, generator=g) + 0.5
        x = F.embedding_bag(ids, self.D, per_sample_weights=mag, mode="sum")
        return x + self.noise * torch.randn(B, self.d, generator=g)

    def batches(self, n: int, B: int):
        return (self.batch(i, B) for i in range(n))


def mean_max_cosine(W_dec: Tensor, D: Tensor) -> float:
    """For each true direction, the best cosine with any decoder row; averaged."""
    W = W_dec / W_dec.norm(dim=1, keepdim=True)
    return float((D @ W.t()).max(dim=1).values.mean())
