"""Feature families across SAE widths: how one feature of a narrow SAE splits in a wider one.

Two SAEs trained on the same site learn dictionaries over the same space, so their decoder rows
can be compared directly: a narrow SAE's feature (San Francisco, in Scaling Monosemanticity)
reappears in the wider one as several features (its landmarks, its sports teams...) whose decoder
rows all point roughly its way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

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
