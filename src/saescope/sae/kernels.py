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

    Forward: values_j = x_c[rows_j] . W_enc[:, latents_j] + b_enc[latents_j], read from the
    already-computed dense ``pre`` (the selection needs it anyway), so no extra matmul.
    """

    @staticmethod
    def forward(
        ctx: Any,
        pre: Tensor,
        x_c: Tensor,
        W_enc: Tensor,
        b_enc: Tensor,
        rows: Tensor,
        latents: Tensor,
    ) -> Tensor:
        ctx.save_for_backward(x_c, W_enc, rows, latents)
        return pre[rows, latents].to(x_c.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x_c, W_enc, rows, latents = ctx.saved_tensors
        n = W_enc.shape[1]
        grad_x = grad_W = grad_b = None
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
        if ctx.needs_input_grad[3]:
            grad_b = torch.zeros(n, dtype=grad.dtype, device=grad.device).index_add_(
                0, latents, grad
            )
        return None, grad_x, grad_W, grad_b, None, None


def sparse_encode(
    pre: Tensor, x_c: Tensor, W_enc: Tensor, b_enc: Tensor, rows: Tensor, latents: Tensor
) -> Tensor:
    """Pre-activations at (rows, latents), with gradients reaching only those entries.

    ``pre`` must equal ``x_c @ W_enc + b_enc`` and be computed without autograd.
    """
    return _SparseEncode.apply(pre, x_c, W_enc, b_enc, rows, latents)


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
