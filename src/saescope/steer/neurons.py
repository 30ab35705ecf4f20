"""Clamping individual dimensions of a site (MLP neurons at ``mlp_act``, or any site's units)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from torch import Tensor

from saescope.errors import SaescopeError
from saescope.models import LanguageModel, edit_sites


@contextmanager
def clamp_neurons(
    model: LanguageModel,
    site: str,
    values: Mapping[int, float],
    positions: Sequence[int] | None = None,
) -> Iterator[None]:
    """Set unit ``i`` of ``site`` to ``values[i]`` on every forward pass inside the block, at
    ``positions`` (default: all); every other unit and position is left exactly as it was."""
    width = model.site_dim(site)
    bad = [i for i in values if not 0 <= i < width]
    if bad:
        raise SaescopeError(f"{site} has {width} units (0..{width - 1}); asked to clamp {bad}")
    index = list(values)

    def clamp(x: Tensor) -> Tensor:  # (B, T, d)
        x = x.clone()
        target = x.new_tensor([values[i] for i in index])
        if positions is None:
            x[..., index] = target
        else:
            for p in positions:
                x[:, p, index] = target
        return x

    with edit_sites(model, [(site, clamp)]):
        yield
