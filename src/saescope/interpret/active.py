"""Which features fire on a prompt: per token, the largest (or those most unusually active for
themselves), with a short description."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from saescope.data import keep_positions
from saescope.errors import SaescopeError
from saescope.interpret.attribution import logit_attribution
from saescope.interpret.query import FeatureIndex
from saescope.interpret.sources import FeatureSource
from saescope.models import LanguageModel, run_with_cache

FEATURE_RANKINGS = ("activation", "relative")
"""How a token's features can be ordered: by activation, or by activation relative to the
feature's typical activation (``relative_to``)."""

Ranking = Callable[[Tensor], Tensor]
"""Maps a prompt's dense feature activations (T, F) to the scores (T, F) that order each token's
features, largest first."""


@dataclass(frozen=True)
class TokenFeatures:
    position: int
    token: str
    features: list[tuple[int, float]]
    """(feature, activation), highest score first; empty at BOS and other excluded tokens."""
    excluded: bool = False
    scores: list[float] = field(default_factory=list)
    """The score each feature was ranked by (its activation when ranked by activation)."""


@torch.inference_mode()
def active_features(
    model: LanguageModel,
    source: FeatureSource,
    prompt: str,
    k: int = 5,
    rank: Ranking | None = None,
) -> list[TokenFeatures]:
    """The ``k`` features of ``source`` that fire at every token of ``prompt`` with the highest
    ``rank`` score (default: the largest activations).

    BOS and other special tokens are shown without features: their activations are outliers
    (Gemma's BOS residual is ~20x a normal token's) that the SAE was not trained on.
    """
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]  # (1, T)
    if ids.shape[1] == 0:
        raise SaescopeError("the prompt is empty after tokenization")
    acts = run_with_cache(model, ids, [source.site])[source.site][0].float()  # (T, d)
    dense = source.encode(acts).to_dense().cpu().float()  # (T, F)
    score = dense if rank is None else rank(dense)  # (T, F)
    score = score.masked_fill(dense <= 0, float("-inf"))  # only features that fire
    keep = keep_positions(ids, model.tokenizer)[0]  # (T,)
    out = []
    for t in range(ids.shape[1]):
        token = model.tokenizer.decode([int(ids[0, t])])
        if not keep[t]:
            out.append(TokenFeatures(t, token, [], excluded=True))
            continue
        values, indices = score[t].topk(min(k, dense.shape[1]))
        fired = [(int(i), float(v)) for v, i in zip(values, indices, strict=True) if v > -math.inf]
        features = [(f, float(dense[t, f])) for f, _ in fired]
        out.append(TokenFeatures(t, token, features, scores=[v for _, v in fired]))
    return out


def check_index(index: FeatureIndex, source: FeatureSource) -> None:
    """Refuse an index built from other features than ``source``'s: its descriptions, densities
    and typical activations would belong to other features."""
    built = index.meta["source"]
    # an --encoder suffix ("+gp:k=32") changes the codes, not the features: same dictionary
    dictionary = str(built.get("identity")).split("+")[0]
    if dictionary != source.identity.split("+")[0] or index.n_features != source.n_features:
        raise SaescopeError(
            f"the index {index.path} was built from {built.get('path') or built.get('identity')} "
            f"({index.n_features:,} features, {built.get('identity')}), not from the "
            f"{source.kind} given ({source.path or source.site}: {source.n_features:,} features, "
            f"{source.identity}); give the index built from it (saescope index --sae ...)"
        )


def typical_activations(index: FeatureIndex) -> Tensor:
    """(F,): each feature's typical activation where it fires, the median over the index's
    sampled contexts (``Firing.sampled_median``), NaN where it has none.

    Not its mean activation when firing: a dense feature fires weakly on most tokens of a
    context, so its mean is small and any strong token looks unusual. On the quickstart SAE
    (layer 6) the features of ' cooked', ' pasta' and ' kitchen' relative to the mean are the
    dense apostrophe features (1.7-2.3x); relative to the sampled median they are cooking,
    "prepared", "Italian" and "house" features (issue #19).
    """
    return torch.from_numpy(index.firing().sampled_median).float()


def relative_to(typical: Tensor) -> Ranking:
    """Rank by activation / ``typical`` (F,), so that a feature unusually active at a token comes
    first; a feature with no typical activation (NaN: it never fired in the index) ranks above
    every other."""
    unseen = torch.isnan(typical)  # (F,)

    def rank(dense: Tensor) -> Tensor:  # (T, F) -> (T, F)
        return torch.where(unseen, math.inf, dense / typical)

    return rank


def describe_features(
    model: LanguageModel,
    source: FeatureSource,
    features: list[int],
    index: FeatureIndex | None = None,
    tokens: int = 3,
) -> dict[int, str]:
    """Short descriptions: from the index when there is one (explanation, else the tokens the
    top examples peak on), else the tokens each feature's write direction promotes most."""
    features = sorted(set(features))
    if not features:
        return {}
    if index is not None:
        return index.describe(features)
    directions = source.write_directions(model)[features]
    _, ids, _, _ = logit_attribution(model, directions, tokens)
    decode = model.tokenizer.decode
    return {
        f: "→ " + " ".join(repr(decode([int(t)])) for t in row)
        for f, row in zip(features, ids, strict=True)
    }
