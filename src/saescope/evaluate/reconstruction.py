"""Reconstruction and latent statistics over a stream of activation batches, in one pass.

Everything is accumulated exactly (float64 sums), so the result does not depend on batching:
FVU = SSE / (sum ||x||^2 - N ||mean||^2) with the mean over all rows.

For a transcoder each batch is a pair (input rows, output-site rows) and everything is measured
against the output site's rows: its FVU is the variance of the output it fails to explain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from saescope._finite import nonfinite_rows
from saescope.errors import SaescopeError
from saescope.sae import SAE

SCALARS = (
    "tokens",
    "fvu",
    "explained_variance",
    "mse",
    "cosine",
    "l2_ratio",
    "relative_reconstruction_bias",
    "l0",
    "dead_fraction",
    "dense_fraction",
)
"""The scalar metrics, in report order."""
DENSE_THRESHOLD = 0.1
"""A latent firing on more than this fraction of tokens counts as dense."""


@dataclass(frozen=True)
class ReconstructionStats:
    tokens: int
    fvu: float
    """Summed squared error over the total variance around the mean of all rows."""
    explained_variance: float
    mse: float
    """Mean over rows of the summed squared error."""
    cosine: float
    """Mean cosine similarity between x and its reconstruction."""
    l2_ratio: float
    """Mean ||x_hat|| / ||x||: below 1 means shrinkage."""
    relative_reconstruction_bias: float
    """E||x_hat||^2 / E[x_hat . x] (Rajamanoharan et al. 2024): 1 is unbiased, < 1 shrinks."""
    l0: float
    dead_fraction: float
    """Latents that fired on none of the rows."""
    dense_fraction: float
    """Latents that fired on more than 10% of the rows."""
    firing_counts: Tensor = field(repr=False)
    """(d_sae,) rows on which each latent fired."""
    l0_counts: Tensor = field(repr=False)
    """(max L0 + 1,) how many rows had each L0."""
    activations: Tensor = field(repr=False)
    """A sample of non-zero latent activations (at most 200,000), for their distribution."""

    @property
    def log10_density(self) -> Tensor:
        return torch.log10(self.firing_counts.double() / self.tokens).float()

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in SCALARS}


def _check_finite(x: Tensor, number: int, rows_before: int, what: str, advice: str) -> None:
    bad_rows = nonfinite_rows(x)
    if bad_rows is not None:
        bad = ~torch.isfinite(x)
        first = [int(i) for i in bad.nonzero()[0]]
        raise SaescopeError(
            f"{what} {number} (counting from 0) holds {int(bad.sum())} NaN/inf values, first at "
            f"index {first} (row {rows_before + first[0]} of the stream); metrics over it would "
            f"be NaN: {advice}"
        )


Batch = Tensor | tuple[Tensor, Tensor]
"""(B, d_in) rows for an SAE; (input rows (B, d_in), output-site rows (B, d_out)) for a
transcoder."""


def _split(sae: SAE, batch: Batch, number: int) -> tuple[Tensor, Tensor]:
    """(what the SAE reads, what its output is compared with), float32 on its device."""
    if sae.cfg.is_transcoder != isinstance(batch, tuple):
        want = "(input, output) row pairs" if sae.cfg.is_transcoder else "tensors of rows"
        raise SaescopeError(
            f"batch {number}: a{' transcoder' if sae.cfg.is_transcoder else 'n SAE'} is "
            f"evaluated on {want}, got a {type(batch).__name__}"
        )
    device = sae.W_enc.device
    if not isinstance(batch, tuple):
        x = batch.to(device, torch.float32)
        return x, x
    x, y = batch
    if len(x) != len(y) or y.shape[-1] != sae.cfg.out_dim:
        raise SaescopeError(
            f"batch {number}: input rows {tuple(x.shape)} and output rows {tuple(y.shape)} do "
            f"not pair up for a transcoder of d_out={sae.cfg.out_dim}"
        )
    return x.to(device, torch.float32), y.to(device, torch.float32)


@torch.no_grad()
def reconstruction_stats(
    sae: SAE, batches: Iterable[Batch], sample: int = 200_000
) -> ReconstructionStats:
    """Metrics of ``sae`` over ``batches`` of raw activations (B, d_in), or of a transcoder
    over (input, output-site) pairs of row batches.

    Refuses a batch holding NaN or inf (naming the batch, row and column) and an SAE whose
    reconstruction of finite input is not finite, so a NaN never reaches the FVU.
    """
    acc = {k: 0.0 for k in ("sse", "sq", "cos", "ratio", "hat_sq", "dot")}
    n = 0
    total = torch.zeros(sae.cfg.out_dim, dtype=torch.float64)
    counts = torch.zeros(sae.cfg.d_sae, dtype=torch.long)
    l0_counts = torch.zeros(1, dtype=torch.long)
    values: list[Tensor] = []
    kept = 0
    for number, batch in enumerate(batches):
        x, target = _split(sae, batch, number)
        _check_finite(x, number, n, "activation batch", "fix or drop those rows")
        if target is not x:
            _check_finite(target, number, n, "output-site batch", "fix or drop those rows")
        out = sae(x)
        _check_finite(
            out.x_hat, number, n, "the SAE's reconstruction of batch", "check the SAE's weights"
        )
        x64, hat = target.double(), out.x_hat.double()
        acc["sse"] += float((x64 - hat).pow(2).sum())
        acc["sq"] += float(x64.pow(2).sum())
        acc["cos"] += float(torch.nn.functional.cosine_similarity(x64, hat, dim=-1).sum())
        acc["ratio"] += float((hat.norm(dim=-1) / x64.norm(dim=-1).clamp_min(1e-12)).sum())
        acc["hat_sq"] += float(hat.pow(2).sum())
        acc["dot"] += float((hat * x64).sum())
        total += x64.sum(0).cpu()
        active = out.latents.values > 0
        counts += torch.bincount(out.latents.indices[active].cpu(), minlength=sae.cfg.d_sae)
        per_row = torch.bincount(out.latents.rows[active].cpu(), minlength=len(x))
        hist = torch.bincount(per_row)
        if len(hist) > len(l0_counts):
            l0_counts = torch.cat([l0_counts, l0_counts.new_zeros(len(hist) - len(l0_counts))])
        l0_counts[: len(hist)] += hist
        if kept < sample:
            values.append(out.latents.values[active][: sample - kept].float().cpu())
            kept += len(values[-1])
        n += len(x)
    if n == 0:
        raise SaescopeError("no activations to evaluate on")
    variance = acc["sq"] - float(total.pow(2).sum()) / n
    fvu = acc["sse"] / max(variance, 1e-12)
    density = counts.double() / n
    return ReconstructionStats(
        tokens=n,
        fvu=fvu,
        explained_variance=1 - fvu,
        mse=acc["sse"] / n,
        cosine=acc["cos"] / n,
        l2_ratio=acc["ratio"] / n,
        relative_reconstruction_bias=acc["hat_sq"] / acc["dot"] if acc["dot"] else float("nan"),
        l0=float(counts.sum()) / n,
        dead_fraction=float((counts == 0).double().mean()),
        dense_fraction=float((density > DENSE_THRESHOLD).double().mean()),
        firing_counts=counts,
        l0_counts=l0_counts,
        activations=torch.cat(values),
    )
