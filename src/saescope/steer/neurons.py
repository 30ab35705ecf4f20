"""Clamping individual dimensions of a site (MLP neurons at ``mlp_act``, or any site's units)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from saescope.models import LanguageModel
from saescope.steer.interventions import Edit, UnitIntervention, intervene
from saescope.steer.positions import Positions


@contextmanager
def clamp_neurons(
    model: LanguageModel,
    site: str,
    values: Mapping[int, float],
    positions: Sequence[int] | None = None,
) -> Iterator[None]:
    """Set unit ``i`` of ``site`` to ``values[i]`` on every forward pass inside the block, at
    token ``positions`` (default: all, BOS included); every other unit and position is left
    exactly as it was. ``UnitIntervention`` does the same and more (add, scale, ablate)."""
    edits = tuple(Edit(i, "clamp", v) for i, v in values.items())
    where = Positions(indices=None if positions is None else tuple(positions), special=True)
    with intervene(model, [UnitIntervention(site, edits, where)]):
        yield
