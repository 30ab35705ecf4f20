import pytest
import torch

from saescope.evaluate.geometry import geometry, max_cosines
from saescope.sae import SAEConfig, build_sae


def test_geometry_equals_naive_computations() -> None:
    sae = build_sae(SAEConfig(d_in=16, d_sae=40, architecture="relu"), seed=0)
    with torch.no_grad():
        sae.W_dec[5] = sae.W_dec[3] * 2  # a duplicate direction
        sae.W_enc.normal_()
    W = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    sims = W @ W.t() - 2 * torch.eye(40)
    torch.testing.assert_close(max_cosines(sae.W_dec, chunk=7), sims.max(1).values)
    g = geometry(sae, neuron_basis=True)
    assert g.duplicate_fraction == pytest.approx(2 / 40)
    cos = torch.nn.functional.cosine_similarity(sae.W_enc.t(), sae.W_dec, dim=1).mean()
    assert g.encoder_decoder_cosine_mean == pytest.approx(float(cos.detach()), rel=1e-5)
    share = (sae.W_dec.pow(2) / sae.W_dec.pow(2).sum(1, keepdim=True)).detach()
    assert g.top1_neuron_share == pytest.approx(float(share.max(1).values.mean()), rel=1e-5)


def test_a_neuron_aligned_dictionary_is_maximally_sparse_in_the_neuron_basis() -> None:
    sae = build_sae(SAEConfig(d_in=16, d_sae=16, architecture="relu"), seed=0)
    with torch.no_grad():
        sae.W_dec.copy_(torch.eye(16))
    g = geometry(sae, neuron_basis=True)
    assert g.top1_neuron_share == pytest.approx(1.0) and g.max_decoder_cosine_mean == pytest.approx(
        0.0
    )
