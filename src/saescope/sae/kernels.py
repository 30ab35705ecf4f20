"""Sparse TopK kernels: encode and decode touch only the active latents, forward and backward.

Latents are kept as COO triples over a batch of B rows: ``rows`` (N,), ``latents`` (N,) and
``values`` (N,), sorted by row. TopK gives N = B * k; BatchTopK gives any N. Decoding is one
``embedding_bag`` over W_dec rows; the encoder's backward is one ``embedding_bag`` over the input
rows, grouped by latent: both cost N * d instead of B * d_sae * d, and no (B, k, d) tensor exists.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def bag_offsets(sorted_keys: Tensor, n_bags: int) -> Tensor:
    """Start offset of each bag in ``sorted_keys`` (bags may be empty)."""
    return torch.searchsorted(sorted_keys, torch.arange(n_bags, device=sorted_keys.device))


def sparse_decode(rows: Tensor, latents: Tensor, values: Tensor, W_dec: Tensor, B: int) -> Tensor:
    """``sum_j values_j * W_dec[latents_j]`` per row, without bias: (B, d). Differentiable."""
    return F.embedding_bag(
        latents, W_dec, bag_offsets(rows, B), mode="sum", per_sample_weights=values
    )


class _SparseEncode(torch.autograd.Function):
    """Gathers pre-activations at given (row, latent) pairs; backward scatters sparsely.

    Forward: values_j = (x - b_dec)[rows_j] . W_enc[:, latents_j] + b_enc[latents_j], read from
    the already-computed dense ``pre`` (the selection needs it anyway), so no extra matmul.
    """

    @staticmethod
    def forward(
        ctx: Any,
        pre: Tensor,
        x: Tensor,
        W_enc: Tensor,
        b_enc: Tensor,
        b_dec: Tensor | None,
        rows: Tensor,
        latents: Tensor,
    ) -> Tensor:
        x_c = x if b_dec is None else x - b_dec
        ctx.save_for_backward(x_c, W_enc, rows, latents)
        return pre[rows, latents].to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x_c, W_enc, rows, latents = ctx.saved_tensors
        n = W_enc.shape[1]
        grad_x = grad_W = grad_b = grad_b_dec = None
        if ctx.needs_input_grad[1]:  # (B, d): sum_j grad_j W_enc[:, latents_j]
            grad_x = F.embedding_bag(
                latents,
                W_enc.t().contiguous(),
                bag_offsets(rows, len(x_c)),
                mode="sum",
                per_sample_weights=grad,
            )
        if ctx.needs_input_grad[2]:  # (d, n): group by latent, sum grad_j * x_c[rows_j]
            order = torch.argsort(latents, stable=True)
            grad_W = F.embedding_bag(
                rows[order],
                x_c,
                bag_offsets(latents[order], n),
                mode="sum",
                per_sample_weights=grad[order],
            ).t()
        if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            grad_b = torch.zeros(n, dtype=grad.dtype, device=grad.device).index_add_(
                0, latents, grad
            )
        if ctx.needs_input_grad[4]:
            # d/d b_dec = -sum_rows d/d x_c = -W_enc @ (grad summed per latent): one
            # matrix-vector product instead of a (B, d) gather of W_enc columns.
            grad_b_dec = -(W_enc @ grad_b)
        if not ctx.needs_input_grad[3]:
            grad_b = None
        return None, grad_x, grad_W, grad_b, grad_b_dec, None, None


def sparse_encode(
    pre: Tensor,
    x: Tensor,
    W_enc: Tensor,
    b_enc: Tensor,
    rows: Tensor,
    latents: Tensor,
    b_dec: Tensor | None = None,
) -> Tensor:
    """Pre-activations at (rows, latents), with gradients reaching only those entries.

    ``pre`` must equal ``(x - b_dec) @ W_enc + b_enc`` (``x @ W_enc + b_enc`` without ``b_dec``)
    and be computed without autograd. Passing ``x`` uncentred and ``b_dec`` apart lets b_dec's
    gradient skip the per-row input gradient, which is only computed if ``x`` itself needs one.
    """
    return _SparseEncode.apply(pre, x, W_enc, b_enc, b_dec, rows, latents)


def topk_coo(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(rows, latents) of the k largest pre-activations of each row, sorted by row."""
    B = pre.shape[0]
    latents = pre.topk(k, dim=-1, sorted=False).indices.reshape(-1)
    rows = torch.arange(B, device=pre.device).repeat_interleave(k)
    return rows, latents


def batch_topk_coo(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(rows, latents) of the B * k largest pre-activations of the whole batch, sorted by row."""
    B, n = pre.shape
    flat = pre.reshape(-1).topk(B * k, sorted=False).indices.sort().values
    return flat // n, flat % n
