"""Measuring steering as GDM does: how often it works against what it costs the model.

For each coefficient of an intervention:

- success: the fraction of sampled rollouts that mention the target concept, read here as
  containing a word of a target vocabulary (whole words, case-insensitive, a plural ``s``/``es``
  allowed: ``sea`` matches "Sea" and "seas", not "season");
- loss: the model's next-token cross-entropy on held-out corpus text with the intervention
  applied at every ordinary token, scored at the positions ``evaluate.splice`` scores
  (prediction and target both ordinary tokens). Coefficient 0 gives the clean loss exactly.

A good steering method reaches high success at little loss; ``pareto_front`` keeps the points no
other point beats on both, and ``plot_steering`` draws the curves of several methods.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from saescope.data import keep_positions
from saescope.errors import SaescopeError
from saescope.evaluate.splice import model_logits, summed_nll
from saescope.models import LanguageModel
from saescope.steer.generate import GenerationConfig, generate_with
from saescope.steer.interventions import Intervention, intervene

log = logging.getLogger(__name__)

ROLLOUTS = GenerationConfig(max_new_tokens=32, samples=8, sample=True)
"""Default rollouts for measuring: 8 sampled continuations of 32 tokens per prompt."""


def mentions(vocabulary: Sequence[str]) -> Callable[[str], bool]:
    """A test for "the text contains a word of ``vocabulary``" (see the module docstring)."""
    if not vocabulary:
        raise SaescopeError("the target vocabulary is empty")
    words = "|".join(re.escape(w.strip()) for w in vocabulary if w.strip())
    pattern = re.compile(rf"\b(?:{words})(?:s|es)?\b", re.IGNORECASE)
    return lambda text: pattern.search(text) is not None


def success_rate(texts: Sequence[str], vocabulary: Sequence[str]) -> float:
    """The fraction of ``texts`` that mention a word of ``vocabulary``."""
    if not texts:
        raise SaescopeError("no texts to score")
    test = mentions(vocabulary)
    return sum(map(test, texts)) / len(texts)


@torch.inference_mode()
def steered_loss(
    model: LanguageModel, interventions: Sequence[Intervention], batches: Iterable[Tensor]
) -> float:
    """Mean next-token cross-entropy over ``batches`` of token ids (B, T) under
    ``interventions`` (none: the clean loss)."""
    total, count = 0.0, 0
    with intervene(model, interventions):
        for ids in batches:
            ids = ids.to(model.device)
            keep = keep_positions(ids, model.tokenizer)  # (B, T)
            scored = keep[:, :-1] & keep[:, 1:]
            logprobs = model_logits(model, ids).log_softmax(-1)
            total += float(summed_nll(logprobs, ids[:, 1:], scored))
            count += int(scored.sum())
    if count == 0:
        raise SaescopeError("no scored positions: the held-out batches are empty")
    return total / count


@dataclass(frozen=True)
class SteeringPoint:
    """One coefficient of one steering method."""

    coefficient: float
    success: float
    """Fraction of rollouts mentioning the target vocabulary."""
    loss: float
    """Cross-entropy on held-out text with the intervention applied."""
    texts: tuple[str, ...]
    """The rollouts, for reading."""


def steering_curve(
    model: LanguageModel,
    make: Callable[[float], Sequence[Intervention]],
    coefficients: Sequence[float],
    prompts: Sequence[str],
    vocabulary: Sequence[str],
    batches: Sequence[Tensor],
    config: GenerationConfig = ROLLOUTS,
) -> list[SteeringPoint]:
    """Success and loss of ``make(c)`` for every coefficient ``c``; rollouts of every prompt
    use ``config`` (the same seed at every coefficient)."""
    points = []
    for c in coefficients:
        interventions = make(c)
        texts = [
            text
            for rollouts in generate_with(model, prompts, interventions, config)
            for text in rollouts.texts
        ]
        point = SteeringPoint(
            c,
            success_rate(texts, vocabulary),
            steered_loss(model, interventions, batches),
            tuple(texts),
        )
        log.info("coefficient %g: success %.2f, loss %.3f", c, point.success, point.loss)
        points.append(point)
    return points


def pareto_front(points: Sequence[SteeringPoint]) -> list[SteeringPoint]:
    """The points no other point beats on both success (higher) and loss (lower), by loss."""
    front = [
        p
        for p in points
        if not any(
            q.success >= p.success
            and q.loss <= p.loss
            and (q.success, q.loss) != (p.success, p.loss)
            for q in points
        )
    ]
    return sorted(front, key=lambda p: p.loss)


def plot_steering(
    curves: Mapping[str, Sequence[SteeringPoint]],
    path: str | Path,
    clean_loss: float | None = None,
    title: str = "steering: success vs loss",
) -> Path:
    """Success against held-out loss for each method, its Pareto front drawn as a line and
    every point labelled with its coefficient. Written as a PNG."""
    from saescope._plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, points), color in zip(curves.items(), plt.rcParams["axes.prop_cycle"], strict=False):
        c = color["color"]
        ax.scatter([p.loss for p in points], [p.success for p in points], color=c, alpha=0.5)
        front = pareto_front(points)
        ax.plot([p.loss for p in front], [p.success for p in front], "-o", color=c, label=name)
        for p in points:
            ax.annotate(
                f"{p.coefficient:g}",
                (p.loss, p.success),
                fontsize=7,
                color=c,
                xytext=(3, 3),
                textcoords="offset points",
            )
    if clean_loss is not None:
        ax.axvline(clean_loss, color="grey", linestyle=":", label="clean loss")
    ax.set_xlabel("cross-entropy on corpus text, intervention applied (nats/token)")
    ax.set_ylabel("fraction of rollouts on target")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title)
    ax.legend(loc="best")  # "lower right" hid the points of curves that stay low
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
