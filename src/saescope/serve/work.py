"""The model jobs the pages ask for, run on the worker thread: each calls the library
(``interpret`` and ``steer``) and returns plain data. None touches the index (its SQLite
connection belongs to the event-loop thread); descriptions are added when rendering."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from saescope.data import keep_positions
from saescope.errors import SaescopeError
from saescope.interpret.active import TokenFeatures, active_features
from saescope.interpret.lens import logit_lens, predict
from saescope.interpret.pictures import grid_shape
from saescope.interpret.sources import FeatureSource
from saescope.models import LanguageModel, run_with_cache
from saescope.steer.comparison import Comparison, compare
from saescope.steer.generate import GenerationConfig
from saescope.steer.interventions import Edit, FeatureIntervention, Intervention
from saescope.steer.measure import SteeringPoint, steering_curve
from saescope.steer.positions import Positions


@dataclass(frozen=True)
class TokenActivations:
    """One feature's activation on every token of a text."""

    tokens: list[str]
    values: list[float]
    excluded: list[bool]
    """BOS and other special tokens: the SAE never sees them (shown unshaded)."""


@torch.inference_mode()
def latents(model: LanguageModel, source: FeatureSource, text: str) -> tuple[list[str], Any, Any]:
    """(tokens, dense (T, F) feature activations, keep (T,)) of ``text``."""
    ids = model.tokenizer(text, return_tensors="pt")["input_ids"]  # (1, T)
    if ids.shape[1] == 0:
        raise SaescopeError("the text is empty after tokenization")
    acts = run_with_cache(model, ids, [source.site])[source.site][0].float()  # (T, d)
    dense = source.encode(acts).to_dense().cpu().float()  # (T, F)
    keep = keep_positions(ids, model.tokenizer)[0]  # (T,)
    dense[~keep] = 0.0
    tokens = [model.tokenizer.decode([int(t)]) for t in ids[0]]
    return tokens, dense, keep


def feature_on_text(
    model: LanguageModel, source: FeatureSource, text: str, feature: int
) -> TokenActivations:
    tokens, dense, keep = latents(model, source, text)
    return TokenActivations(tokens, dense[:, feature].tolist(), (~keep).tolist())


@dataclass(frozen=True)
class Inspection:
    tokens: list[TokenFeatures]
    position: int
    picture: dict[str, Any]
    """rows, cols, values (row-major, NaN-free: padding cells are 0) and limit of the chosen
    token's feature vector laid out by ``pictures.grid_shape``."""
    next_tokens: list[tuple[str, float]]
    lens_stages: list[str]
    lens_top: list[list[tuple[str, float]]]


def inspect(
    model: LanguageModel, source: FeatureSource, prompt: str, position: int, k: int
) -> Inspection:
    """The features on every token, the chosen token's feature vector as a picture, the
    next-token distribution and the logit lens at the last position."""
    tokens = active_features(model, source, prompt, k=k)
    if not -len(tokens) <= position < len(tokens):
        raise SaescopeError(f"position {position} is outside the prompt's {len(tokens)} tokens")
    position %= len(tokens)
    _, dense, _ = latents(model, source, prompt)
    vector = dense[position]  # (F,)
    rows, cols = grid_shape(vector.numel())
    limit = float(vector.abs().max()) or 1.0
    values = vector.tolist() + [0.0] * (rows * cols - vector.numel())
    lens = logit_lens(model, prompt)
    return Inspection(
        tokens=tokens,
        position=position,
        picture={"rows": rows, "cols": cols, "values": values, "limit": limit},
        next_tokens=predict(model, prompt).top(10),
        lens_stages=lens.stages,
        lens_top=lens.top(5),
    )


def steer(
    model: LanguageModel,
    prompt: str,
    interventions: Sequence[Intervention],
    config: GenerationConfig,
) -> Comparison:
    return compare(model, prompt, interventions, config)


def sweep(
    model: LanguageModel,
    source: FeatureSource,
    feature: int,
    op: str,
    values: Sequence[float],
    where: Positions,
    error_term: bool,
    prompt: str,
    vocabulary: Sequence[str],
    loss_text: str,
    config: GenerationConfig,
) -> list[SteeringPoint]:
    """``steer.steering_curve`` of one feature edit over ``values``: success is the share of
    rollouts mentioning ``vocabulary``; loss is measured on ``loss_text``."""
    sae = source.sae
    assert sae is not None  # the app refuses sweeps without an SAE

    def make(value: float) -> list[Intervention]:
        edit = Edit(feature, op, value)
        return [FeatureIntervention(sae, (edit,), where, error_term=error_term)]

    batch = model.tokenizer(loss_text, return_tensors="pt")["input_ids"]  # (1, T)
    return steering_curve(model, make, values, [prompt], vocabulary, [batch], config)
