"""Sparse coding over a fixed dictionary: matching, orthogonal matching and gradient pursuit.

Each codes rows ``x`` (B, d) with ``k`` steps over the atoms ``W_dec`` (n, d), batched: one
(B, d) x (d, n) matmul with the dictionary per step chooses an atom for every row at once, and
everything else touches only the chosen atoms (a (B, k, d) gather), so there is no loop over rows.

    step:  c = r @ D.T                       (B, n)  the one dictionary matmul
           j = argmax c  (|c| without nonneg)        the atom most correlated with the residual
           S = S + {j}
      MP:  z_j += <r, d_j>                           (an atom may be chosen twice)
      OMP: z_S  = argmin ||x - z_S D_S||             (least squares on the support)
      GP:  g    = c restricted to S                  (the gradient of ||r||^2 / 2 on S)
           z_S += (<r, g D_S> / ||g D_S||^2) g       (exact line search along g)
      then with nonneg: z = max(z, 0), and the atoms left at 0 leave the support (GP), as in
      GDM's pseudo-code ("Replacing SAE Encoders with Inference-Time Optimisation").

Atoms are normalised for the selection and the values scaled back, so ``z @ W_dec`` is the
reconstruction whatever the decoder norms. The selection may run in bf16 (``select_dtype``):
only which atom is chosen can change; every value, step size and residual is computed from the
chosen atoms in float32, so each step still lowers the residual (MP, GP) or solves the support's
least squares exactly (OMP). float64 inputs are coded in float64.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae.base import Latents

Method = Literal["mp", "omp", "gp"]


def matching_pursuit(
    x: Tensor, W_dec: Tensor, k: int, nonneg: bool = True, select_dtype: torch.dtype | None = None
) -> Latents:
    """Matching pursuit: ``k`` greedy steps, each adding the chosen atom's inner product with the
    residual to its coefficient. At most ``k`` distinct atoms per row."""
    return pursuit("mp", x, W_dec, k, nonneg, select_dtype)


def orthogonal_matching_pursuit(
    x: Tensor, W_dec: Tensor, k: int, nonneg: bool = True, select_dtype: torch.dtype | None = None
) -> Latents:
    """Orthogonal matching pursuit: after each choice, the least-squares coefficients of the
    support. With ``nonneg`` they are clipped at 0 (an approximation of non-negative least
    squares: the residual then need not fall at every step)."""
    return pursuit("omp", x, W_dec, k, nonneg, select_dtype)


def gradient_pursuit(
    x: Tensor, W_dec: Tensor, k: int, nonneg: bool = True, select_dtype: torch.dtype | None = None
) -> Latents:
    """Gradient pursuit (GDM's pseudo-code): after each choice, one gradient step on the
    support with the exact line-search step size, then projection onto z >= 0 (``nonneg``)."""
    return pursuit("gp", x, W_dec, k, nonneg, select_dtype)


@torch.no_grad()
def pursuit(
    method: Method,
    x: Tensor,
    W_dec: Tensor,
    k: int,
    nonneg: bool = True,
    select_dtype: torch.dtype | None = None,
) -> Latents:
    """Code ``x`` (B, d) over the rows of ``W_dec`` (n, d) with ``k`` steps of ``method``.

    Returns the non-zero coefficients as Latents (sorted by row, at most ``k`` per row) in
    ``W_dec``'s dtype, such that ``latents @ W_dec`` approximates ``x``.
    """
    if method not in ("mp", "omp", "gp"):
        raise SaescopeError(f"pursuit method must be mp, omp or gp, got {method!r}")
    if x.ndim != 2 or W_dec.ndim != 2 or x.shape[1] != W_dec.shape[1]:
        raise SaescopeError(
            f"pursuit expects x (B, d) and W_dec (n, d) of the same d, got x "
            f"{tuple(x.shape)} and W_dec {tuple(W_dec.shape)}"
        )
    n = W_dec.shape[0]
    if not 0 < k <= n:
        raise SaescopeError(f"pursuit needs 0 < k <= {n} (the dictionary's atoms), got k={k}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    norms = W_dec.to(dtype).norm(dim=1).clamp_min(torch.finfo(dtype).tiny)  # (n,)
    D = W_dec.to(dtype) / norms[:, None]  # (n, d) unit atoms
    D_sel = D if select_dtype is None else D.to(select_dtype)
    x = x.to(dtype)
    B, d = x.shape
    S = torch.zeros(B, k, dtype=torch.long, device=x.device)  # (B, k) atom of each slot
    valid = torch.zeros(B, k, dtype=torch.bool, device=x.device)  # slot holds an atom
    coef = torch.zeros(B, k, dtype=dtype, device=x.device)  # (B, k) its coefficient
    A = torch.zeros(B, k, d, dtype=dtype, device=x.device)  # (B, k, d) its (unit) atom
    G = torch.zeros(B, k, k, dtype=dtype, device=x.device) if method == "omp" else None
    r = x.clone()  # (B, d) residual
    for t in range(k):
        c = r.to(D_sel.dtype) @ D_sel.T  # (B, n)
        score = c if nonneg else c.abs()
        best, j = score.max(dim=1)  # (B,)
        ok = best > 0  # nothing left to explain (or, nonneg, no atom points along r)
        hit = valid & (j[:, None] == S)  # (B, k) j already in the support
        new = ok & ~hit.any(dim=1)
        S[:, t] = torch.where(new, j, S[:, t])
        valid[:, t] = new
        A[new, t] = D[j[new]]
        chosen = hit & ok[:, None]
        chosen[:, t] |= new
        if method == "mp":
            a = (r * D[j]).sum(dim=1)  # (B,) exact, whatever chose j
            a = torch.where(ok, a.clamp_min(0) if nonneg else a, 0)
            coef += chosen * a[:, None]
            r -= a[:, None] * D[j]
            continue
        if method == "gp":
            support = valid & ((coef != 0) | chosen)
            g = torch.einsum("bkd,bd->bk", A, r) * support  # (B, k) gradient on the support
            Dg = torch.einsum("bk,bkd->bd", g, A)  # (B, d)
            denom = (Dg * Dg).sum(dim=1)
            step = (Dg * r).sum(dim=1) / denom.clamp_min(torch.finfo(dtype).tiny)
            coef += step[:, None] * g
        else:
            assert G is not None
            col = torch.einsum("bkd,bd->bk", A, A[:, t])  # (B, k) new Gram row and column
            G[:, t, :] = col
            G[:, :, t] = col
            coef = _least_squares(G[:, : t + 1, : t + 1], A[:, : t + 1], x, valid[:, : t + 1])
            coef = torch.cat([coef, coef.new_zeros(B, k - t - 1)], dim=1)
        if nonneg:
            coef.clamp_(min=0)
        r = x - torch.einsum("bk,bkd->bd", coef, A)
    keep = valid & (coef != 0)
    rows, slot = keep.nonzero(as_tuple=True)
    atoms = S[rows, slot]
    values = (coef[rows, slot] / norms[atoms]).to(W_dec.dtype)
    return Latents(values, atoms, rows, (B, n))


def _least_squares(G: Tensor, A: Tensor, x: Tensor, valid: Tensor) -> Tensor:
    """(B, t) coefficients minimising ||x - coef @ A|| given the Gram matrix ``G`` of ``A``.

    Empty slots have zero atoms: a unit diagonal there gives them coefficient 0. The small
    ridge keeps near-duplicate atoms (a singular Gram matrix) from failing the solve.
    """
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    ridge = torch.finfo(G.dtype).eps * 16
    system = G + eye * (~valid)[:, None, :] + ridge * eye  # (B, t, t)
    rhs = torch.einsum("btd,bd->bt", A, x)  # (B, t)
    return torch.linalg.solve(system, rhs)
