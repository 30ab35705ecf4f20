"""The generator's statistics match its parameters."""

from __future__ import annotations

import pytest
import torch

from saescope.errors import SaescopeError
from saescope.toy.synthetic import SyntheticConfig, SyntheticData

CFG = SyntheticConfig(d=16, n_free=40, l0=4.0, group_size=4, correlation=0.6, seed=1)
ROWS = 40_000


@pytest.fixture(scope="module")
def sample():
    data = SyntheticData(CFG)
    x, codes = data.sample(ROWS, torch.Generator().manual_seed(0))
    return data, x, codes


def test_firing_frequencies_match_the_parameters(sample) -> None:
    data, _, codes = sample
    p = data.frequencies.double()
    seen = (codes > 0).double().mean(0)
    sigma = (p * (1 - p) / ROWS).sqrt().clamp_min(1e-4)
    assert ((seen - p).abs() / sigma).max() < 5, (seen - p).abs().max()
    assert float(data.free_frequencies.sum()) == pytest.approx(CFG.l0, rel=1e-4)
    zipf = data.free_frequencies[:-1] / data.free_frequencies[1:]  # p_i / p_(i+1) = ((i+2)/(i+1))^a
    expected = (torch.arange(2, CFG.n_free + 1) / torch.arange(1, CFG.n_free)).float()
    uncapped = data.free_frequencies[:-1] < CFG.max_frequency
    assert torch.allclose(zipf[uncapped], expected[uncapped], rtol=1e-4)


def test_magnitudes_are_log_normal(sample) -> None:
    _, _, codes = sample
    logs = codes[codes > 0].log()
    assert float(logs.mean()) == pytest.approx(CFG.magnitude_mu, abs=0.01)
    assert float(logs.std()) == pytest.approx(CFG.magnitude_sigma, abs=0.01)


def test_a_parent_fires_whenever_one_of_its_children_does(sample) -> None:
    data, _, codes = sample
    assert len(data.pairs) == CFG.n_parents * CFG.children_per_parent
    for parent, child in data.pairs:
        on = codes[:, child] > 0
        assert on.any()
        assert (codes[on, parent] > 0).all()
    alone = (codes[:, data.parents] > 0).float().mean()  # parents also fire without children
    assert float(alone) > CFG.child_frequency * CFG.children_per_parent


def test_features_in_a_group_fire_together(sample) -> None:
    _, _, codes = sample
    fires = (codes[:, : CFG.n_free] > 0).float()
    corr = torch.corrcoef(fires.T)  # (n_free, n_free)
    group = torch.arange(CFG.n_free) // CFG.group_size
    same = (group[:, None] == group[None, :]) & ~torch.eye(CFG.n_free, dtype=torch.bool)
    other = group[:, None] != group[None, :]
    assert float(corr[same].mean()) > 0.1
    assert abs(float(corr[other].mean())) < 0.01


def test_activations_are_the_dictionary_times_the_codes_plus_noise(sample) -> None:
    data, x, codes = sample
    assert torch.allclose(data.dictionary.norm(dim=1), torch.ones(CFG.n_features))
    residual = x - codes @ data.dictionary
    assert float(residual.std()) == pytest.approx(CFG.noise, rel=0.05)


def test_seeded() -> None:
    a, b = SyntheticData(CFG), SyntheticData(CFG)
    assert torch.equal(a.dictionary, b.dictionary)
    assert torch.equal(next(a.batches(1, 8, seed=2)), next(b.batches(1, 8, seed=2)))
    assert not torch.equal(next(a.batches(1, 8, seed=2)), next(a.batches(1, 8, seed=3)))


def test_an_unreachable_l0_is_refused() -> None:
    with pytest.raises(SaescopeError, match="cannot be reached by 10 free features"):
        SyntheticConfig(n_free=10, l0=6.0, max_frequency=0.5)
