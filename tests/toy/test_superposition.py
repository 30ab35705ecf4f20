"""The toy model of superposition reproduces the paper's qualitative results on a seed."""

from __future__ import annotations

import math
import re

import pytest
import torch

from saescope.errors import SaescopeError
from saescope.toy.superposition import ToyConfig, ToyHidden, geometry, train_toy, train_toys

FAST = ToyConfig(steps=1_500, batch_size=512, seed=0)


@pytest.fixture(scope="module")
def relu_dense_and_sparse():
    return train_toys(FAST, [0.0, 0.99])


def test_dense_features_get_only_the_m_most_important_a_dimension(relu_dense_and_sparse) -> None:
    dense = relu_dense_and_sparse[0]
    norms = dense.geometry().norms
    m = FAST.d_hidden
    assert torch.allclose(norms[:m], torch.ones(m), atol=0.1), norms
    assert norms[m:].max() < 0.2, norms
    assert dense.geometry().superposition[:m].max() < 0.05  # orthogonal: no sharing


def test_sparse_features_are_packed_beyond_m_dimensions(relu_dense_and_sparse) -> None:
    sparse = relu_dense_and_sparse[1]
    geo = sparse.geometry()
    assert int(geo.represented().sum()) > FAST.d_hidden, geo.norms
    assert geo.dimensions_per_feature < 0.75
    assert geo.superposition[geo.represented()].max() > 0.5  # some features share a direction


def test_the_linear_model_never_superposes() -> None:
    linear = train_toy(ToyConfig(steps=800, batch_size=512, sparsity=0.99, kind="linear"))
    assert int(linear.geometry().represented().sum()) <= 5


def test_geometry_of_known_arrangements() -> None:
    own = geometry(torch.eye(2))  # two features, a dimension each
    assert torch.allclose(own.dimensionality, torch.ones(2))
    assert torch.allclose(own.superposition, torch.zeros(2))
    pair = geometry(torch.tensor([[1.0, -1.0]]))  # an antipodal pair in one dimension
    assert torch.allclose(pair.dimensionality, torch.full((2,), 0.5))
    assert torch.allclose(pair.superposition, torch.ones(2))
    angles = torch.arange(5) * 2 * math.pi / 5
    pentagon = geometry(torch.stack([angles.cos(), angles.sin()]))
    assert torch.allclose(pentagon.dimensionality, torch.full((5,), 0.4), atol=1e-5)
    assert pentagon.dimensions_per_feature == pytest.approx(2 / 5)
    dropped = geometry(torch.tensor([[1.0, 0.0]]))
    assert float(dropped.dimensionality[1]) == 0.0


def test_training_is_seeded_and_leaves_the_global_generator_alone() -> None:
    cfg = ToyConfig(steps=20, batch_size=64, seed=3)
    before = torch.random.get_rng_state()
    a, b = train_toy(cfg), train_toy(cfg)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a.W, b.W) and torch.equal(a.b, b.b)


def test_hidden_ground_truth_reconstructs_the_hidden_layer(relu_dense_and_sparse) -> None:
    truth = ToyHidden(relu_dense_and_sparse[0])
    assert len(truth.features) == 5 and truth.pairs == ()
    x, codes = truth.sample(256, torch.Generator().manual_seed(0))
    assert x.shape == (256, 5) and codes.shape == (256, 5)
    # The dropped features add almost nothing: the represented ones explain the hidden layer.
    assert torch.allclose(codes @ truth.dictionary, x, atol=0.3)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sparsity", 1.0, "sparsity S must be in [0, 1)"),
        ("kind", "tanh", "kind must be one of"),
        ("n_features", 0, "n_features must be an integer >= 1"),
        ("importance_decay", 0.0, "importance_decay must be in (0, 1]"),
    ],
)
def test_bad_configs_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(SaescopeError, match=re.escape(message)):
        ToyConfig(**{field: value})  # type: ignore[arg-type]
