import pytest
import torch
from conftest import SITE

from saescope.errors import SaescopeError
from saescope.models import run_with_cache
from saescope.sae import SAEConfig, build_sae
from saescope.steer import (
    contrastive_vector,
    decompose,
    feature_vector,
    project_out,
)


@pytest.fixture
def wide_sae():
    """Decoder rows far apart enough (512 in 64 dims is still overcomplete) for OMP to recover
    a 3-sparse combination exactly."""
    return build_sae(SAEConfig(d_in=64, d_sae=512, architecture="topk", k=8), seed=2).eval()


def test_feature_vector_is_the_weighted_sum_of_decoder_rows(sae) -> None:
    v = feature_vector(sae, {3: 2.0, 9: -1.0})
    torch.testing.assert_close(v, 2 * sae.W_dec[3] - sae.W_dec[9], rtol=0, atol=1e-6)
    with pytest.raises(SaescopeError, match="128 latents"):
        feature_vector(sae, {128: 1.0})


@pytest.mark.parametrize("method", ["omp", "encoder"])
def test_decompose_recovers_a_sparse_combination(wide_sae, method) -> None:
    weights = {5: 3.0, 40: -2.0, 301: 1.5}
    v = feature_vector(wide_sae, weights)
    if method == "encoder":  # the encoder picks by v @ W_enc: give it room to find all three
        found = decompose(v, wide_sae, k=20, method=method)
        assert set(weights) <= set(found.features.tolist())
    else:
        found = decompose(v, wide_sae, k=3, method=method)
        assert set(found.features.tolist()) == set(weights)
    assert found.explained == pytest.approx(1.0, abs=1e-4)
    top = {f: c for f, c, _ in found.top(3)}
    for feature, weight in weights.items():
        assert top[feature] == pytest.approx(weight, abs=1e-3)
    assert float(found.contributions.sum()) == pytest.approx(found.explained, abs=1e-4)


def test_decompose_coefficients_are_the_least_squares_fit(wide_sae) -> None:
    v = torch.randn(64)
    found = decompose(v, wide_sae, k=6)
    rows = wide_sae.W_dec.detach()[found.features]  # (6, d)
    naive = torch.linalg.pinv(rows.t()) @ v
    torch.testing.assert_close(found.coefficients, naive, rtol=1e-3, atol=1e-4)
    residual = v - found.coefficients @ rows
    assert found.explained == pytest.approx(1 - float(residual.norm() ** 2 / v.norm() ** 2), 1e-4)
    assert 0 < found.explained < 1


def test_project_out_removes_exactly_the_features_span(sae) -> None:
    v = torch.randn(2, 64)
    features = [1, 7, 30]
    out = project_out(v, sae, features)
    A = sae.W_dec.detach()[features].t()  # (d, F)
    naive = v - (A @ torch.linalg.inv(A.t() @ A) @ A.t() @ v.t()).t()
    torch.testing.assert_close(out, naive, rtol=1e-4, atol=1e-4)
    assert (A.t() @ out.t()).abs().max() < 1e-4  # orthogonal to every removed row
    torch.testing.assert_close(project_out(v[0], sae, features), out[0])


def test_contrastive_vectors(gemma) -> None:
    tok = gemma.tokenizer
    pos, neg = "Bridges span rivers", "Watson wrote it"
    acts = {pos: run_with_cache(gemma, tok(pos, return_tensors="pt")["input_ids"], [SITE])[SITE][0]}
    acts[neg] = run_with_cache(gemma, tok(neg, return_tensors="pt")["input_ids"], [SITE])[SITE][0]
    mean = contrastive_vector(gemma, SITE, pos, neg)
    torch.testing.assert_close(mean, acts[pos].mean(0) - acts[neg].mean(0))
    last = contrastive_vector(gemma, SITE, [pos, pos], [neg], reduce="last")
    torch.testing.assert_close(last, acts[pos][-1] - acts[neg][-1])
    aligned = contrastive_vector(gemma, SITE, pos, neg, reduce="aligned")
    n = min(len(acts[pos]), len(acts[neg]))
    assert aligned.shape == (max(len(acts[pos]), len(acts[neg])), 64)
    torch.testing.assert_close(aligned[:n], acts[pos][:n] - acts[neg][:n])
    with pytest.raises(SaescopeError, match="one to one"):
        contrastive_vector(gemma, SITE, [pos, pos], [neg], reduce="aligned")
