"""Encoder specs and the SAE whose encode is a pursuit or a truncation."""

from __future__ import annotations

import pytest
import torch

from saescope.coding import CodedSAE, EncoderSpec, parse_encoder, truncate_topk, with_encoder
from saescope.errors import SaescopeError
from saescope.sae import SAEConfig, build_sae
from saescope.sae.base import Latents


def sae(architecture: str = "topk", k: int | None = 16):
    return build_sae(SAEConfig(d_in=16, d_sae=64, architecture=architecture, k=k), seed=0)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("gp:k=32", EncoderSpec("gp", 32)),
        ("mp:k=16,nonneg=0", EncoderSpec("mp", 16, nonneg=False)),
        ("omp: k=8, bf16=1", EncoderSpec("omp", 8, bf16=True)),
        ("topk:k=4", EncoderSpec("topk", 4)),
    ],
)
def test_specs_parse_and_print_back(text: str, spec: EncoderSpec) -> None:
    assert parse_encoder(text) == spec
    assert parse_encoder(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("lasso:k=3", "expected gp:k=32"),
        ("gp", "expected gp:k=32"),
        ("gp:k=0", "positive integer"),
        ("gp:k=x", "invalid literal"),
        ("gp:k=3,speed=9", "expected gp:k=32"),
        ("gp:k=3,nonneg=yes", "a flag is 0 or 1"),
        ("gp:k=3,k=4", "repeated"),
        ("topk:k=3,nonneg=0", "pursuits only"),
    ],
)
def test_bad_specs_are_refused_with_the_spelling(text: str, match: str) -> None:
    with pytest.raises(SaescopeError, match=match):
        parse_encoder(text)


def test_the_coded_sae_shares_the_dictionary_and_decodes_its_pursuit() -> None:
    inner = sae()
    with torch.no_grad():
        inner.b_dec.normal_()
    coded = with_encoder(inner, "gp:k=8")
    assert isinstance(coded, CodedSAE) and coded.W_dec is inner.W_dec
    x = torch.randn(2, 5, 16)
    out = coded(x)
    assert out.x_hat.shape == x.shape and int(out.latents.l0().max()) <= 8
    from saescope.coding import gradient_pursuit

    want = gradient_pursuit(x.reshape(-1, 16) - inner.b_dec, inner.W_dec, 8)
    torch.testing.assert_close(out.latents.to_dense(), want.to_dense())
    # ITO at the SAE's own L0 reconstructs better than its encoder on its own dictionary
    mse = lambda s: float((s(x).x_hat.detach() - x).pow(2).mean())  # noqa: E731
    assert mse(with_encoder(inner, "gp:k=16")) < mse(inner)


def test_coding_in_chunks_equals_coding_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    coded = with_encoder(sae(), "omp:k=4")
    x = torch.randn(10, 16)
    whole = coded.encode(x).to_dense()
    monkeypatch.setattr("saescope.coding.coded.CHUNK", 3)
    torch.testing.assert_close(coded.encode(x).to_dense(), whole)


def test_topk_truncation_keeps_each_rows_largest() -> None:
    inner = sae("relu", None)
    x = torch.randn(12, 16)
    full = inner.encode(x).to_dense()
    got = with_encoder(inner, "topk:k=3").encode(x).to_dense()
    for row_full, row_got in zip(full, got, strict=True):
        keep = row_full.topk(min(3, int((row_full > 0).sum()))).indices
        want = torch.zeros_like(row_full)
        want[keep] = row_full[keep]
        torch.testing.assert_close(row_got, want)


def test_truncating_rows_with_fewer_latents_keeps_them_all() -> None:
    lat = Latents(
        torch.tensor([1.0, 5.0, 2.0, 3.0]),
        torch.tensor([0, 1, 2, 3]),
        torch.tensor([0, 0, 0, 2]),
        (3, 4),
    )
    out = truncate_topk(lat, 2)
    assert out.rows.tolist() == [0, 0, 2] and out.values.tolist() == [5.0, 2.0, 3.0]


def test_none_is_the_sae_itself() -> None:
    inner = sae()
    assert with_encoder(inner, None) is inner
