"""Clean vs steered, side by side: the next-token distribution and the continuations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from saescope.interpret.lens import Prediction, predict
from saescope.models import LanguageModel
from saescope.steer.generate import GREEDY, GenerationConfig, Rollouts, generate_with
from saescope.steer.interventions import Intervention, intervene


@dataclass(frozen=True)
class Comparison:
    """One prompt, without and with the interventions."""

    clean: Prediction
    steered: Prediction
    clean_rollouts: Rollouts
    steered_rollouts: Rollouts

    def top_changes(self, k: int = 10) -> list[tuple[str, float, float]]:
        """The k tokens whose probability rose most: (token, p clean, p steered)."""
        delta = self.steered.probs - self.clean.probs
        ids = delta.topk(k).indices
        decode = self.clean.tokenizer.decode  # type: ignore[attr-defined]
        return [
            (decode([int(i)]), float(self.clean.probs[i]), float(self.steered.probs[i]))
            for i in ids
        ]


@torch.inference_mode()
def compare(
    model: LanguageModel,
    prompt: str,
    interventions: Sequence[Intervention],
    config: GenerationConfig = GREEDY,
    clean: tuple[Prediction, Rollouts] | None = None,
) -> Comparison:
    """Predict and continue ``prompt`` with and without ``interventions`` (the same seed for
    both). ``clean``: a clean prediction and rollouts already computed (a sweep reuses them)."""
    if clean is None:
        [rollouts] = generate_with(model, prompt, [], config)
        clean = (predict(model, prompt), rollouts)
    with intervene(model, interventions):
        steered = predict(model, prompt)
    [steered_rollouts] = generate_with(model, prompt, interventions, config)
    return Comparison(clean[0], steered, clean[1], steered_rollouts)
