"""How well an SAE recovers a known dictionary: pure functions of tensors.

Cosines are signed: an SAE's activations are non-negative, so a decoder row pointing at -D_i
reconstructs the opposite of feature i and does not recover it. Rows are matched by their best
cosine, so the order of the latents does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from saescope.errors import SaescopeError

RECOVERED = 0.9
"""A true feature counts as recovered when some decoder row has cosine above this with it."""
CARRIES = 0.25
"""A decoder row carries a direction when its cosine with it is at least this (absorption)."""


def _unit(rows: Tensor) -> Tensor:
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cosines(W_dec: Tensor, dictionary: Tensor) -> Tensor:
    """(n, d_sae) cosine of every true feature (rows of ``dictionary``, (n, d)) with every
    decoder row (``W_dec``, (d_sae, d))."""
    if W_dec.shape[1] != dictionary.shape[1]:
        raise SaescopeError(
            f"the decoder has rows of width {W_dec.shape[1]}, the dictionary {dictionary.shape[1]}; "
            "was the SAE trained on these activations?"
        )
    return _unit(dictionary.float()) @ _unit(W_dec.float()).T


def best_cosines(W_dec: Tensor, dictionary: Tensor) -> Tensor:
    """(n,) for each true feature, its best cosine with any decoder row."""
    return cosines(W_dec, dictionary).max(dim=1).values


def mean_max_cosine(W_dec: Tensor, dictionary: Tensor) -> float:
    """The mean over true features of their best cosine with any decoder row (1.0: all found)."""
    return float(best_cosines(W_dec, dictionary).mean())


def fraction_recovered(W_dec: Tensor, dictionary: Tensor, above: float = RECOVERED) -> float:
    """The fraction of true features with some decoder row at cosine above ``above``."""
    return float((best_cosines(W_dec, dictionary) > above).float().mean())


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """Fraction of the variance of ``x`` (B, d) around its mean left unexplained by ``x_hat``."""
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12))


def dead_fraction(acts: Tensor) -> float:
    """The fraction of latents that never fire in ``acts`` (B, d_sae)."""
    return float(((acts > 0).sum(0) == 0).float().mean())


@dataclass(frozen=True)
class Absorption:
    """Absorption on hierarchical features, pooled over every (parent, child) pair."""

    rate: float
    """Of the rows where a child fires (so its parent is present): the fraction where the
    parent's latent stays silent and an active latent carrying both the parent's and the
    child's direction (the child's latent, with the parent absorbed) fires instead."""
    parent_missed: float
    """Of the same rows: the fraction where the parent's latent stays silent, absorbed or not."""
    parents_found: float
    """The fraction of parents that have a latent of their own (see ``absorption``)."""
    rows: int
    """Child-firing rows counted (over all pairs)."""


def absorption(
    acts: Tensor,
    W_dec: Tensor,
    codes: Tensor,
    dictionary: Tensor,
    pairs: tuple[tuple[int, int], ...],
    carries: float = CARRIES,
) -> Absorption:
    """Ground-truth absorption of latents ``acts`` (B, d_sae) with decoder ``W_dec`` on data
    whose true coefficients are ``codes`` (B, n) over ``dictionary`` (n, d).

    The parent's latent is the decoder row closest to the parent's direction among the rows
    that carry none of its children's directions (a row carrying parent and child is the
    child's latent that absorbed the parent, not the parent's own). A parent with no such row
    at cosine >= ``carries`` has no latent: it is missed on every child row.
    """
    if not pairs:
        raise SaescopeError("absorption needs (parent, child) pairs; this data has no hierarchy")
    if acts.shape[0] != codes.shape[0]:
        raise SaescopeError(f"{acts.shape[0]} rows of latents but {codes.shape[0]} rows of codes")
    cos = cosines(W_dec, dictionary)  # (n, d_sae)
    children: dict[int, list[int]] = {}
    for parent, child in pairs:
        children.setdefault(parent, []).append(child)
    own: dict[int, int | None] = {}
    for parent, kids in children.items():
        clean = (cos[kids] < carries).all(0)  # (d_sae,) rows carrying no child
        score = torch.where(clean, cos[parent], -2.0)
        best = int(score.argmax())
        own[parent] = best if float(score[best]) >= carries else None
    fires = acts > 0  # (B, d_sae)
    absorbed = missed = total = 0
    for parent, child in pairs:
        on = codes[:, child] > 0  # (B,)
        if not on.any():
            continue
        latent = own[parent]
        silent = (
            ~fires[on, latent]
            if latent is not None
            else torch.ones(int(on.sum()), dtype=torch.bool)
        )
        absorber = (cos[parent] >= carries) & (cos[child] >= carries)  # (d_sae,)
        if latent is not None:
            absorber[latent] = False
        carried = (fires[on] & absorber).any(1)  # (rows,)
        absorbed += int((silent & carried).sum())
        missed += int(silent.sum())
        total += int(on.sum())
    found = sum(v is not None for v in own.values()) / len(own)
    if total == 0:
        return Absorption(float("nan"), float("nan"), found, 0)
    return Absorption(absorbed / total, missed / total, found, total)
