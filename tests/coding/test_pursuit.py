"""The batched pursuits against per-row references, and their invariants."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor

from saescope.coding import (
    gradient_pursuit,
    matching_pursuit,
    orthogonal_matching_pursuit,
    pursuit,
)
from saescope.errors import SaescopeError
from saescope.sae.base import Latents

METHODS = ("mp", "omp", "gp")


def dictionary(n: int = 96, d: int = 24, seed: int = 0, dtype=torch.float64) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n, d, generator=g, dtype=dtype)
    return D / D.norm(dim=1, keepdim=True)


def signals(D: Tensor, B: int = 16, k: int = 4, seed: int = 1) -> Tensor:
    """Rows that are sparse non-negative combinations of atoms plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(B, D.shape[0], dtype=D.dtype)
    for b in range(B):
        idx = torch.randperm(D.shape[0], generator=g)[:k]
        z[b, idx] = torch.rand(k, generator=g, dtype=D.dtype) + 0.5
    return z @ D + 0.01 * torch.randn(B, D.shape[1], generator=g, dtype=D.dtype)


def naive_mp(x: Tensor, D: Tensor, k: int, nonneg: bool) -> Tensor:
    z, r = torch.zeros(D.shape[0], dtype=x.dtype), x.clone()
    for _ in range(k):
        c = D @ r
        j = int((c if nonneg else c.abs()).argmax())
        a = max(float(c[j]), 0.0) if nonneg else float(c[j])
        z[j] += a
        r -= a * D[j]
    return z


def naive_gp(x: Tensor, D: Tensor, k: int, nonneg: bool) -> Tensor:
    """GDM's pseudo-code, one row, dense weights."""
    w = torch.zeros(D.shape[0], dtype=x.dtype)
    for _ in range(k):
        r = x - w @ D
        c = D @ r
        selected = w != 0
        selected[int((c if nonneg else c.abs()).argmax())] = True
        grad = selected * c
        Dg = grad @ D
        w = w + (Dg @ r) / (Dg @ Dg) * grad
        if nonneg:
            w = w.relu()
    return w


def dense(lat: Latents) -> Tensor:
    return lat.to_dense()


@pytest.mark.parametrize("nonneg", [True, False])
def test_mp_matches_a_per_row_loop(nonneg: bool) -> None:
    D = dictionary()
    x = signals(D)
    got = dense(matching_pursuit(x, D, 6, nonneg))
    want = torch.stack([naive_mp(row, D, 6, nonneg) for row in x])
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("nonneg", [True, False])
def test_gp_matches_gdms_pseudo_code_per_row(nonneg: bool) -> None:
    D = dictionary()
    x = signals(D)
    got = dense(gradient_pursuit(x, D, 6, nonneg))
    want = torch.stack([naive_gp(row, D, 6, nonneg) for row in x])
    torch.testing.assert_close(got, want)


def test_omp_matches_sklearn() -> None:
    from sklearn.linear_model import OrthogonalMatchingPursuit

    D = dictionary()
    x = signals(D)
    got = dense(orthogonal_matching_pursuit(x, D, 6, nonneg=False))
    omp = OrthogonalMatchingPursuit(n_nonzero_coefs=6, fit_intercept=False)
    want = torch.from_numpy(omp.fit(D.T.numpy(), x.T.numpy()).coef_)  # (B, n)
    torch.testing.assert_close(got, want, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_exact_recovery_from_an_orthogonal_dictionary(method: str) -> None:
    Q, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))
    D = Q.T  # orthonormal atoms
    z = torch.zeros(8, 32, dtype=torch.float64)
    for b in range(8):
        z[b, torch.randperm(32)[:5]] = torch.rand(5, dtype=torch.float64) + 0.1
    got = dense(pursuit(method, z @ D, D, 5))  # type: ignore[arg-type]
    torch.testing.assert_close(got, z)


@pytest.mark.parametrize("nonneg", [True, False])
@pytest.mark.parametrize("method", METHODS)
def test_the_residual_never_grows(method: str, nonneg: bool) -> None:
    if method == "omp" and nonneg:
        pytest.skip("clipped least squares need not lower the residual (documented)")
    D = dictionary(dtype=torch.float32)
    x = signals(D, B=32, k=10)
    errors = []
    for k in range(1, 13):
        lat = pursuit(method, x, D, k, nonneg)  # type: ignore[arg-type]
        errors.append((x - dense(lat) @ D).norm(dim=1))
    for before, after in itertools.pairwise(errors):
        assert bool((after <= before * (1 + 1e-5) + 1e-6).all()), (before, after)


@pytest.mark.parametrize("method", METHODS)
def test_nonneg_codes_are_nonnegative_and_at_most_k_per_row(method: str) -> None:
    D = dictionary(dtype=torch.float32)
    x = torch.randn(40, 24)  # arbitrary signs: many atoms would want negative codes
    lat = pursuit(method, x, D, 7)  # type: ignore[arg-type]
    assert bool((lat.values > 0).all())
    assert int(lat.l0().max()) <= 7
    assert bool((lat.rows[1:] >= lat.rows[:-1]).all())  # sorted by row, as Latents promise


@pytest.mark.parametrize("method", METHODS)
def test_a_batch_codes_as_its_rows_do(method: str) -> None:
    D = dictionary()
    x = signals(D, B=12)
    whole = dense(pursuit(method, x, D, 5))  # type: ignore[arg-type]
    rows = torch.cat([dense(pursuit(method, row[None], D, 5)) for row in x])  # type: ignore[arg-type]
    torch.testing.assert_close(whole, rows)


@pytest.mark.parametrize("method", METHODS)
def test_decoder_norms_are_undone_in_the_values(method: str) -> None:
    D = dictionary()
    x = signals(D)
    scale = torch.rand(D.shape[0], 1, dtype=D.dtype) + 0.5
    unit = dense(pursuit(method, x, D, 5))  # type: ignore[arg-type]
    scaled = dense(pursuit(method, x, D * scale, 5))  # type: ignore[arg-type]
    torch.testing.assert_close(scaled @ (D * scale), unit @ D)


def test_bf16_selection_keeps_values_exact_for_the_atoms_chosen() -> None:
    D = dictionary(n=256, d=64, dtype=torch.float32)
    x = signals(D, B=64, k=8)
    for method in METHODS:
        lat32 = pursuit(method, x, D, 8)  # type: ignore[arg-type]
        lat16 = pursuit(method, x, D, 8, select_dtype=torch.bfloat16)  # type: ignore[arg-type]
        assert lat16.values.dtype == torch.float32
        fvu32 = (x - dense(lat32) @ D).pow(2).sum() / x.pow(2).sum()
        fvu16 = (x - dense(lat16) @ D).pow(2).sum() / x.pow(2).sum()
        assert float(fvu16) < float(fvu32) * 1.5 + 1e-3, (method, fvu16, fvu32)


def test_bad_shapes_and_k_are_refused() -> None:
    D = dictionary()
    with pytest.raises(SaescopeError, match="same d"):
        gradient_pursuit(torch.randn(3, 5, dtype=torch.float64), D, 2)
    with pytest.raises(SaescopeError, match="0 < k <= 96"):
        gradient_pursuit(torch.randn(3, 24, dtype=torch.float64), D, 97)
    with pytest.raises(SaescopeError, match="mp, omp or gp"):
        pursuit("lasso", torch.randn(3, 24), D, 2)  # type: ignore[arg-type]
