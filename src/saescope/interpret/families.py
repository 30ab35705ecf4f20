"""Feature families across SAE widths: how one feature of a narrow SAE splits in a wider one.

Two SAEs trained on the same site learn dictionaries over the same space, so their decoder rows
can be compared directly: a narrow SAE's feature (San Francisco, in Scaling Monosemanticity)
reappears in the wider one as several features (its landmarks, its sports teams...) whose decoder
rows all point roughly its way.

Random directions in a few hundred dimensions also have a closest match, and decoders share
structure (a common offset, a few huge dimensions) that raises every cosine, so
``family_baseline`` computes the same statistics against a shuffled copy of the wide decoder:
a family means more than chance only where the real numbers stand clear of those.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae import SAE


@dataclass(frozen=True)
class FeatureFamily:
    """One feature of a narrow SAE and the features of a wider one that its decoder row splits
    into (not ``models.Family``, which is an architecture family of language models)."""

    parent: int
    """Feature of the narrow SAE."""
    children: list[tuple[int, float]]
    """(feature of the wide SAE, decoder cosine with the parent), most similar first."""
    best_cosine: float
    """Cosine of the closest child (a feature that split has no single child near 1)."""


@torch.inference_mode()
def feature_families(
    narrow: SAE,
    wide: SAE,
    parents: list[int] | None = None,
    threshold: float = 0.5,
    max_children: int = 8,
) -> list[FeatureFamily]:
    """For each parent feature of ``narrow``, the features of ``wide`` whose decoder rows have
    cosine >= ``threshold`` with it (always at least the closest one)."""
    if narrow.cfg.d_in != wide.cfg.d_in:
        raise SaescopeError(
            f"the SAEs read different widths ({narrow.cfg.d_in} and {wide.cfg.d_in}): "
            "families compare SAEs trained on the same site"
        )
    parents = list(range(narrow.cfg.d_sae)) if parents is None else parents
    bad = [p for p in parents if not 0 <= p < narrow.cfg.d_sae]
    if bad:
        raise SaescopeError(f"the narrow SAE has features 0..{narrow.cfg.d_sae - 1}; asked {bad}")
    a = F.normalize(narrow.W_dec.detach().float()[parents], dim=1)  # (P, d)
    b = F.normalize(wide.W_dec.detach().float(), dim=1)  # (W, d)
    values, indices = (a @ b.t()).topk(min(max_children, len(b)), dim=1)  # (P, m)
    out = []
    for p, vals, ids in zip(parents, values.tolist(), indices.tolist(), strict=True):
        children = [(i, v) for i, v in zip(ids, vals, strict=True) if v >= threshold]
        out.append(FeatureFamily(p, children or [(ids[0], vals[0])], vals[0]))
    return out


def split_features(families: list[FeatureFamily], min_children: int = 2) -> list[FeatureFamily]:
    """Families where the parent split: at least ``min_children`` children above threshold,
    most children first."""
    split = [f for f in families if len(f.children) >= min_children]
    return sorted(split, key=lambda f: (-len(f.children), -f.best_cosine))


@dataclass(frozen=True)
class MatchStats:
    """How the narrow SAE's features match one wide decoder, over every narrow feature."""

    best_cosine_mean: float
    best_cosine_quantiles: dict[str, float]
    """The best cosine of each parent at the 10th, 50th and 90th percentiles (keys p10...)."""
    matched_fraction: float
    """Parents whose closest wide feature has cosine >= the threshold."""
    split_fraction: float
    """Parents with at least ``min_children`` wide features at cosine >= the threshold."""
    same_index_fraction: float
    """Parents whose closest wide feature has the parent's own index (chance: 1 / wide width;
    far above it, the two SAEs started from the same random numbers)."""


@dataclass(frozen=True)
class FamilyBaseline:
    """The match statistics against the wide SAE and against its shuffled decoder."""

    real: MatchStats
    shuffled: MatchStats
    n_parents: int
    """Features of the narrow SAE (every one is compared)."""
    threshold: float
    min_children: int
    above_chance_fraction: float
    """Parents whose best cosine exceeds the largest best cosine of any parent against the
    shuffled decoder: matches that chance did not produce once in the whole baseline."""


def shuffled_decoder(W_dec: Tensor, seed: int = 0) -> Tensor:
    """``W_dec`` (W, d) with each column permuted across rows independently.

    Every dimension keeps exactly its values (its mean, its spread, its heavy tails: the few
    huge residual dimensions of a model stay huge), so unrelated directions that resemble each
    other only through what all rows share (a common offset, unequal variance per dimension)
    still do, while the rows themselves, the directions the SAE learned, are gone. Permuting
    the dimensions within each row instead would keep each row's values but move its large
    dimensions to random places, and so underrate the cosines that chance alone gives.
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.argsort(torch.rand(W_dec.shape, generator=g), dim=0)  # (W, d), per column
    return W_dec.gather(0, order.to(W_dec.device))


def _matches(a: Tensor, b: Tensor, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Best cosine (P,), its index (P,) and the count >= ``threshold`` (P,) of each row of
    ``a`` (P, d) against ``b`` (W, d), unit rows; in chunks of parents to bound memory."""
    best, best_at, counts = [], [], []
    for start in range(0, len(a), 1024):
        cos = a[start : start + 1024] @ b.t()  # (chunk, W)
        values, indices = cos.max(dim=1)
        best.append(values)
        best_at.append(indices)
        counts.append((cos >= threshold).sum(dim=1))
    return torch.cat(best), torch.cat(best_at), torch.cat(counts)


def _stats(
    best: Tensor, best_at: Tensor, count: Tensor, threshold: float, least: int
) -> MatchStats:
    q = torch.quantile(best, torch.tensor([0.1, 0.5, 0.9]))
    return MatchStats(
        best_cosine_mean=float(best.mean()),
        best_cosine_quantiles={f"p{p}": float(v) for p, v in zip((10, 50, 90), q, strict=True)},
        matched_fraction=float((best >= threshold).float().mean()),
        split_fraction=float((count >= least).float().mean()),
        same_index_fraction=float((best_at == torch.arange(len(best))).float().mean()),
    )


@torch.inference_mode()
def family_baseline(
    narrow: SAE, wide: SAE, threshold: float = 0.5, min_children: int = 2, seed: int = 0
) -> FamilyBaseline:
    """The match statistics of every feature of ``narrow`` against ``wide`` and against
    ``shuffled_decoder(wide.W_dec, seed)``: a split means more than chance only where the
    real numbers stand clear of the shuffled ones."""
    if narrow.cfg.d_in != wide.cfg.d_in:
        raise SaescopeError(
            f"the SAEs read different widths ({narrow.cfg.d_in} and {wide.cfg.d_in}): "
            "families compare SAEs trained on the same site"
        )
    a = F.normalize(narrow.W_dec.detach().float(), dim=1)  # (P, d)
    W = wide.W_dec.detach().float()  # (W, d)
    real = _matches(a, F.normalize(W, dim=1), threshold)
    chance = _matches(a, F.normalize(shuffled_decoder(W, seed), dim=1), threshold)
    return FamilyBaseline(
        real=_stats(*real, threshold, min_children),
        shuffled=_stats(*chance, threshold, min_children),
        n_parents=len(a),
        threshold=threshold,
        min_children=min_children,
        above_chance_fraction=float((real[0] > chance[0].max()).float().mean()),
    )
