"""Recovery metrics on constructed cases whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from saescope.errors import SaescopeError
from saescope.toy.recovery import (
    absorption,
    dead_fraction,
    fraction_recovered,
    fvu,
    mean_max_cosine,
)

D = torch.eye(6)[:4]  # (4, 6): four true features, orthogonal


def test_a_perfect_dictionary_scores_one() -> None:
    assert mean_max_cosine(D, D) == pytest.approx(1.0)
    assert fraction_recovered(D, D) == 1.0


def test_order_scale_and_extra_latents_do_not_matter() -> None:
    W = torch.cat(
        [3 * D[[2, 0, 3, 1]], torch.randn(5, 6, generator=torch.Generator().manual_seed(0))]
    )
    assert mean_max_cosine(W, D) == pytest.approx(1.0)
    assert fraction_recovered(W, D) == 1.0


def test_a_sign_flipped_row_does_not_recover_its_feature() -> None:
    # Latents are non-negative: a row at -D_i reconstructs the opposite of feature i.
    W = D.clone()
    W[1] = -W[1]
    assert fraction_recovered(W, D) == 0.75
    assert mean_max_cosine(W, D) == pytest.approx(0.75)  # (1 + 1 + 0 + 1) / 4


def test_a_decoder_of_another_width_is_refused() -> None:
    with pytest.raises(SaescopeError, match="width 5, the dictionary 6"):
        mean_max_cosine(torch.ones(3, 5), D)


def test_fvu_and_dead() -> None:
    x = torch.randn(100, 6, generator=torch.Generator().manual_seed(0))
    assert fvu(x, x) == 0.0
    assert fvu(x, x.mean(0).expand_as(x)) == pytest.approx(1.0)
    acts = torch.zeros(10, 4)
    acts[3, 1] = 1.0
    assert dead_fraction(acts) == 0.75


def _hierarchy_case(absorbed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Feature 0 is the parent of 1; rows 0-9 have parent and child, rows 10-19 the parent alone."""
    codes = torch.zeros(20, 4)
    codes[:, 0] = 1.0
    codes[:10, 1] = 1.0
    acts = torch.zeros(20, 4)
    acts[10:, 0] = 1.0  # the parent's latent fires on the parent alone
    if absorbed:  # latent 1 = parent + child, and the parent latent is silent when it fires
        W = torch.stack([D[0], (D[0] + D[1]) / 2**0.5, D[2], D[3]])
        acts[:10, 1] = 1.4
    else:
        W = D.clone()
        acts[:10, 0] = acts[:10, 1] = 1.0
    return acts, W, codes


def test_absorption_is_detected_where_constructed() -> None:
    acts, W, codes = _hierarchy_case(absorbed=True)
    found = absorption(acts, W, codes, D, ((0, 1),))
    assert found.rate == 1.0 and found.parent_missed == 1.0
    assert found.parents_found == 1.0 and found.rows == 10


def test_no_absorption_when_parent_and_child_latents_both_fire() -> None:
    acts, W, codes = _hierarchy_case(absorbed=False)
    found = absorption(acts, W, codes, D, ((0, 1),))
    assert found.rate == 0.0 and found.parent_missed == 0.0


def test_a_silent_parent_without_an_absorber_is_missed_not_absorbed() -> None:
    acts, W, codes = _hierarchy_case(absorbed=False)
    acts[:5, 0] = 0.0  # the parent latent misses half the child rows; the child latent is pure
    found = absorption(acts, W, codes, D, ((0, 1),))
    assert found.rate == 0.0 and found.parent_missed == 0.5


def test_a_parent_with_no_latent_of_its_own() -> None:
    acts, W, codes = _hierarchy_case(absorbed=True)
    W[0] = D[2]  # nothing carries the parent alone any more
    found = absorption(acts, W, codes, D, ((0, 1),))
    assert found.parents_found == 0.0 and found.rate == 1.0


def test_no_pairs_or_no_child_rows() -> None:
    acts, W, codes = _hierarchy_case(absorbed=True)
    with pytest.raises(SaescopeError, match="no hierarchy"):
        absorption(acts, W, codes, D, ())
    codes[:, 1] = 0.0
    assert math.isnan(absorption(acts, W, codes, D, ((0, 1),)).rate)
