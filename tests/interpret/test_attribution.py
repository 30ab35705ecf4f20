"""Logit attribution, neighbours and feature families against naive computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_model

from saescope.errors import SaescopeError
from saescope.interpret.attribution import logit_attribution, nearest_neighbours, top_neurons_of
from saescope.interpret.families import feature_families, split_features
from saescope.sae import SAEConfig, build_sae


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_logit_attribution_is_the_direction_through_norm_gain_and_unembedding(
    family, tokenizer
) -> None:
    model = tiny_model(family, tokenizer)
    final_norm = model.hf.transformer.ln_f if family == "gpt2" else model.hf.model.norm
    with torch.no_grad():  # make the gains matter
        final_norm.weight.uniform_(0.5, 1.5)
    directions = torch.randn(5, 64)
    gain = final_norm.weight.detach() + (1.0 if family == "gemma3" else 0.0)
    centred = directions - directions.mean(1, keepdim=True) if family == "gpt2" else directions
    naive = (centred * gain) @ model.hf.lm_head.weight.detach().t()  # (5, vocab)
    pv, pi, sv, si = logit_attribution(model, directions, k=4, chunk=2)
    torch.testing.assert_close(pv, naive.topk(4).values)
    torch.testing.assert_close(sv, naive.topk(4, largest=False).values)
    assert torch.equal(pi, naive.topk(4).indices) and torch.equal(
        si, naive.topk(4, largest=False).indices
    )


def test_neighbours_and_neurons_equal_naive() -> None:
    rows = torch.randn(30, 8)
    cos, ids = nearest_neighbours(rows, k=3, chunk=7)
    naive = F.normalize(rows, dim=1) @ F.normalize(rows, dim=1).t()
    naive.fill_diagonal_(-2)
    torch.testing.assert_close(cos, naive.topk(3).values)
    assert torch.equal(ids, naive.topk(3).indices)
    weights, neurons = top_neurons_of(torch.tensor([[0.1, -3.0, 2.0, 0.5]]), k=2)
    assert neurons.tolist() == [[1, 2]] and weights.tolist() == [[-3.0, 2.0]]


def test_a_feature_that_splits_is_found_with_its_children() -> None:
    narrow = build_sae(SAEConfig(d_in=16, d_sae=4, architecture="relu"), seed=0)
    wide = build_sae(SAEConfig(d_in=16, d_sae=12, architecture="relu"), seed=1)
    basis = torch.linalg.qr(torch.randn(16, 16)).Q.t()  # orthonormal rows
    with torch.no_grad():
        narrow.W_dec.copy_(basis[:4])
        wide.W_dec.copy_(basis[4:16])  # unrelated to every parent ...
        # ... except parent 2, which splits into three children near it
        for child, other in ((0, 4), (5, 5), (9, 6)):
            wide.W_dec[child] = F.normalize(basis[2] + 0.5 * basis[other + 4], dim=0)
    families = feature_families(narrow, wide, threshold=0.5)
    assert [c for c, _ in families[2].children] and {c for c, _ in families[2].children} == {
        0,
        5,
        9,
    }
    assert all(cos == pytest.approx(1 / 1.25**0.5, abs=1e-5) for _, cos in families[2].children)
    assert [f.parent for f in split_features(families)] == [2]
    assert len(families[0].children) == 1  # no child above threshold: the closest one is shown
    with pytest.raises(SaescopeError, match=r"features 0\.\.3"):
        feature_families(narrow, wide, [7])
