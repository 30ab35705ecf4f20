"""Reconstruction metrics over a stream of activation batches, accumulated exactly."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae import SAE


@dataclass(frozen=True)
class ReconstructionStats:
    tokens: int
    fvu: float
    """Summed squared error over the total variance around the mean of all rows."""
    explained_variance: float
    mse: float
    """Mean over rows of the summed squared error."""
    l0: float
    dead_fraction: float
    """Latents that fired on none of the rows."""

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def reconstruction_stats(sae: SAE, batches: Iterable[Tensor]) -> ReconstructionStats:
    """FVU, MSE, L0 and dead fraction of ``sae`` over ``batches`` of raw activations (B, d).

    The variance is taken around the mean of all rows (two accumulators, one pass): FVU =
    SSE / (sum ||x||^2 - N ||mean||^2), computed in float64.
    """
    sse = sq = l0 = 0.0
    n = 0
    total = torch.zeros(sae.cfg.d_in, dtype=torch.float64)
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for x in batches:
        x = x.to(sae.W_enc.device, torch.float32)
        out = sae(x)
        sse += float((x - out.x_hat).double().pow(2).sum())
        sq += float(x.double().pow(2).sum())
        total += x.double().sum(0).cpu()
        l0 += float(out.latents.l0().sum())
        fired[out.latents.indices[out.latents.values > 0].cpu()] = True
        n += len(x)
    if n == 0:
        raise SaescopeError("no activations to evaluate on")
    variance = sq - float(total.pow(2).sum()) / n
    fvu = sse / max(variance, 1e-12)
    return ReconstructionStats(n, fvu, 1 - fvu, sse / n, l0 / n, float((~fired).float().mean()))
