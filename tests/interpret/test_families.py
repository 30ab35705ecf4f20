"""Feature families against the shuffled baseline: a planted split stands out, chance does not."""

import pytest
import torch
import torch.nn.functional as F

from saescope.errors import SaescopeError
from saescope.interpret.families import family_baseline, feature_families, shuffled_decoder
from saescope.sae import SAE, SAEConfig, build_sae

D = 64


def _sae(W_dec: torch.Tensor) -> SAE:
    sae = build_sae(SAEConfig(d_in=W_dec.shape[1], d_sae=len(W_dec), k=1), seed=0)
    with torch.no_grad():
        sae.W_dec.copy_(W_dec)
    return sae


def _planted(parents: int = 64, split: int = 32, children: int = 3, wide: int = 512):
    """Parent rows; the first ``split`` reappear as ``children`` rows each at parent + 0.5 x a
    unit noise orthogonal to it (cosine 0.89), the rest of the wide decoder random."""
    g = torch.Generator().manual_seed(0)
    P = F.normalize(torch.randn(parents, D, generator=g), dim=1)  # (parents, D)
    rows = []
    for p in P[:split]:
        noise = torch.randn(children, D, generator=g)
        noise = F.normalize(noise - (noise @ p)[:, None] * p, dim=1)  # orthogonal to p
        rows.append(p + 0.5 * noise)
    rest = torch.randn(wide - split * children, D, generator=g)
    W = torch.cat([*rows, rest])[torch.randperm(wide, generator=g)]
    return _sae(P), _sae(W)


def test_a_planted_split_stands_clear_of_the_shuffled_baseline() -> None:
    narrow, wide = _planted()
    baseline = family_baseline(narrow, wide, threshold=0.5)
    assert baseline.real.split_fraction == pytest.approx(0.5)  # the 32 planted of 64 parents
    assert baseline.shuffled.split_fraction == 0.0
    assert baseline.real.best_cosine_quantiles["p90"] > 0.85
    assert baseline.shuffled.best_cosine_quantiles["p90"] < 0.5
    assert baseline.above_chance_fraction == pytest.approx(0.5)
    families = feature_families(narrow, wide, threshold=0.5)
    assert sum(len(f.children) == 3 for f in families) == 32


def test_random_decoders_match_no_better_than_their_shuffle() -> None:
    g = torch.Generator().manual_seed(1)
    narrow, wide = _sae(torch.randn(128, D, generator=g)), _sae(torch.randn(512, D, generator=g))
    baseline = family_baseline(narrow, wide, threshold=0.5)
    real, shuffled = baseline.real, baseline.shuffled
    assert real.split_fraction == shuffled.split_fraction == 0.0
    assert abs(real.best_cosine_mean - shuffled.best_cosine_mean) < 0.03
    assert baseline.above_chance_fraction < 0.05
    assert real.same_index_fraction < 0.05


def test_a_shared_initialisation_shows_as_same_index_matches() -> None:
    narrow = build_sae(SAEConfig(d_in=D, d_sae=128, k=1), seed=0)
    wide = build_sae(SAEConfig(d_in=D, d_sae=512, k=1), seed=0)  # one seed: shared first rows
    assert family_baseline(narrow, wide).real.same_index_fraction == 1.0


def test_the_shuffle_keeps_every_dimension_and_breaks_the_rows() -> None:
    W = torch.randn(300, D) * torch.linspace(0.1, 10, D) + 3.0  # unequal dimensions, an offset
    S = shuffled_decoder(W, seed=0)
    assert torch.equal(S.sort(dim=0).values, W.sort(dim=0).values)  # each column's values kept
    assert (S == W).all(dim=1).sum() == 0


def test_saes_of_different_sites_are_refused() -> None:
    with pytest.raises(SaescopeError, match="different widths"):
        family_baseline(_sae(torch.randn(8, D)), _sae(torch.randn(8, D + 1)))
