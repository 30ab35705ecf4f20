"""Which features fire on a prompt: per token, the largest, with a short description."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saescope.data import keep_positions
from saescope.errors import SaescopeError
from saescope.interpret.attribution import logit_attribution
from saescope.interpret.query import FeatureIndex
from saescope.interpret.sources import FeatureSource
from saescope.models import LanguageModel, run_with_cache


@dataclass(frozen=True)
class TokenFeatures:
    position: int
    token: str
    features: list[tuple[int, float]]
    """(feature, activation), largest first; empty at BOS and other excluded tokens."""
    excluded: bool = False


@torch.inference_mode()
def active_features(
    model: LanguageModel, source: FeatureSource, prompt: str, k: int = 5
) -> list[TokenFeatures]:
    """The ``k`` largest features of ``source`` at every token of ``prompt``.

    BOS and other special tokens are shown without features: their activations are outliers
    (Gemma's BOS residual is ~20x a normal token's) that the SAE was not trained on.
    """
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]  # (1, T)
    if ids.shape[1] == 0:
        raise SaescopeError("the prompt is empty after tokenization")
    acts = run_with_cache(model, ids, [source.site])[source.site][0].float()  # (T, d)
    dense = source.encode(acts).to_dense().cpu()  # (T, F)
    keep = keep_positions(ids, model.tokenizer)[0]  # (T,)
    out = []
    for t in range(ids.shape[1]):
        token = model.tokenizer.decode([int(ids[0, t])])
        if not keep[t]:
            out.append(TokenFeatures(t, token, [], excluded=True))
            continue
        values, indices = dense[t].topk(min(k, dense.shape[1]))
        fired = [(int(i), float(v)) for v, i in zip(values, indices, strict=True) if v > 0]
        out.append(TokenFeatures(t, token, fired))
    return out


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
