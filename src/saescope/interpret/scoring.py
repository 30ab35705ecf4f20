"""Scores of explanations: how well a scorer LLM, given only the explanation, predicts where the
feature fires on the index's held-out contexts (never shown to the explainer).

- ``detection``: one held-out context at a time (firing or silent, near misses included), "is
  the pattern present?"; balanced accuracy over the contexts.
- ``fuzzing``: one firing held-out context at a time with some tokens marked, half of them the
  tokens where the feature is strongest and half as many random tokens where it is silent, "are
  the marked tokens where the pattern is?"; balanced accuracy.
- ``simulation``: predict each token's activation 0..10 of one context; Pearson correlation
  with the true activations over every token of every context, firing and silent (Bills et al.).
  All at once, not token by token: one call per context that answers the whole list, as delphi
  and Neuronpedia do at scale. Token by token costs one call per token (26 a context) or, as
  Bills et al. did, the log-probabilities of the 0..10 tokens in one forward pass, which
  chat endpoints (and the ``ChatBackend`` interface) do not give.

One call per context for every method, rather than several contexts in one prompt: a small
model's list answers drift out of alignment with the items, and then one bad answer would spoil
several. An answer that does not parse is counted (``n_unparsed``) and its item left out, never
scored as right or wrong. Each score comes with a 95% percentile bootstrap interval over the
items, drawn from the run's own generator. Every explanation of a feature (the model's and both
baselines) is scored on the same items, so their scores compare pairwise.
"""

from __future__ import annotations

import datetime
import logging
import math
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from saescope.errors import SaescopeError
from saescope.interpret import store
from saescope.interpret.explain import token_text
from saescope.interpret.llm import ChatBackend, ChatMessage, Sampling
from saescope.interpret.neurons import Example
from saescope.interpret.query import FeatureIndex

log = logging.getLogger(__name__)

METHODS = ("detection", "fuzzing", "simulation")
PROMPT_VERSION = "score/2"
"""Stored beside every score; change it whenever a scoring prompt's text changes."""
MARK_SHARE = 0.3
"""Fuzzing marks the tokens of a firing context whose activation is at least this share of the
context's peak (at least the peak itself)."""
MARK = ("<<", ">>")


@dataclass(frozen=True)
class ScoreConfig:
    """Which held-out contexts are scored and how the intervals are drawn."""

    methods: tuple[str, ...] = METHODS
    activating: int = 10
    """Held-out firing contexts per feature, taken in turn from each quantile, highest first."""
    silent: int = 10
    """Held-out silent contexts per feature, near misses first."""
    bootstrap: int = 1000
    """Resamples of the items for the confidence interval."""
    seed: int = 0
    """Seeds the fuzzing marks and the bootstrap (their own generators)."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise SaescopeError(
                f"scoring methods must be among {', '.join(METHODS)}, got {list(self.methods)}"
            )
        for name in ("activating", "bootstrap"):
            if getattr(self, name) < 1:
                raise SaescopeError(f"score {name} must be >= 1, got {getattr(self, name)}")
        if self.silent < 0:
            raise SaescopeError(f"score silent must be >= 0, got {self.silent}")


class Item(NamedTuple):
    """One held-out context to score on."""

    tokens: list[str]
    activations: list[float]
    """The feature's true activations (all 0 in a silent context)."""
    firing: bool


# -- the maths --------------------------------------------------------------------------------


def balanced_accuracy(truth: ArrayLike, predicted: ArrayLike) -> float | None:
    """The mean of the true-positive and true-negative rates; None when either class is absent
    (then it is undefined). Always-yes scores 0.5 however imbalanced the classes."""
    t, p = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    if t.all() or not t.any():
        return None
    return float(((p & t).sum() / t.sum() + (~p & ~t).sum() / (~t).sum()) / 2)


def correlation(truth: ArrayLike, predicted: ArrayLike) -> float | None:
    """Pearson correlation; 0 for a constant prediction (it carries no information about where
    the feature fires), None when the truth is constant (nothing to predict)."""
    t, p = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    if len(t) < 2 or np.ptp(t) == 0:
        return None
    if np.ptp(p) == 0:
        return 0.0
    return float(np.corrcoef(t, p)[0, 1])


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float | None],
    n: int,
    resamples: int,
    generator: np.random.Generator,
) -> tuple[float | None, float | None]:
    """The 95% percentile interval of ``statistic(item indices)`` over ``resamples`` draws of
    ``n`` items with replacement; draws where the statistic is undefined are left out."""
    values = []
    for _ in range(resamples):
        value = statistic(generator.integers(n, size=n))
        if value is not None:
            values.append(value)
    if not values:
        return None, None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


class Score(NamedTuple):
    score: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    n_unparsed: int


def classification_score(
    truth: Sequence[bool], answers: Sequence[bool | None], resamples: int, seed: int
) -> Score:
    """Balanced accuracy of the parsed ``answers`` (None: unparsed, left out) with its interval."""
    kept = [(t, a) for t, a in zip(truth, answers, strict=True) if a is not None]
    t = np.array([k[0] for k in kept], dtype=bool)
    a = np.array([k[1] for k in kept], dtype=bool)
    score = balanced_accuracy(t, a)
    low = high = None
    if score is not None:
        gen = np.random.default_rng(seed)
        low, high = bootstrap_interval(
            lambda i: balanced_accuracy(t[i], a[i]), len(t), resamples, gen
        )
    return Score(score, low, high, len(kept), len(answers) - len(kept))


def simulation_score(
    truth: Sequence[Sequence[float]],
    predicted: Sequence[Sequence[float] | None],
    resamples: int,
    seed: int,
) -> Score:
    """Correlation over every token of the contexts whose prediction parsed (None: unparsed),
    with an interval from resampling whole contexts."""
    kept = [(t, p) for t, p in zip(truth, predicted, strict=True) if p is not None]

    def pooled(which: np.ndarray) -> float | None:
        if not len(which):
            return None
        t = np.concatenate([kept[i][0] for i in which])
        p = np.concatenate([kept[i][1] for i in which])
        return correlation(t, p)

    score = pooled(np.arange(len(kept)))
    low = high = None
    if score is not None:
        low, high = bootstrap_interval(pooled, len(kept), resamples, np.random.default_rng(seed))
    return Score(score, low, high, len(kept), len(predicted) - len(kept))


# -- prompts and answers ------------------------------------------------------------------------

_TASK = "A hidden pattern in text is described below, followed by an excerpt of text. "
DETECTION_SYSTEM = (
    _TASK + "Decide whether the pattern is present anywhere in the excerpt. "
    'Answer "Yes" or "No" only.'
)
FUZZING_SYSTEM = (
    _TASK + f"Some tokens of the excerpt are marked {MARK[0]}like this{MARK[1]}. Decide whether "
    'the marked tokens are ones where the pattern is present. Answer "Yes" or "No" only.'
)
SIMULATION_SYSTEM = (
    _TASK + "The excerpt is given one token per line. For each token, predict how strongly the "
    "pattern is present at it, from 0 (absent) to 10 (strongest). Reply with the same tokens, "
    "one per line, in the same order, each followed by a tab and your number, and nothing else."
)


def _excerpt(tokens: Sequence[str], marked: set[int] | frozenset[int] = frozenset()) -> str:
    return "".join(
        f"{MARK[0]}{token_text(t)}{MARK[1]}" if i in marked else token_text(t)
        for i, t in enumerate(tokens)
    )


def detection_prompt(explanation: str, item: Item) -> list[ChatMessage]:
    return [
        {"role": "system", "content": DETECTION_SYSTEM},
        {"role": "user", "content": f"Pattern: {explanation}\n\nExcerpt: {_excerpt(item.tokens)}"
         "\n\nIs the pattern present in this excerpt? Answer Yes or No."},
    ]  # fmt: skip


def fuzzing_prompt(explanation: str, item: Item, marked: set[int]) -> list[ChatMessage]:
    return [
        {"role": "system", "content": FUZZING_SYSTEM},
        {"role": "user", "content": f"Pattern: {explanation}\n\nExcerpt: "
         f"{_excerpt(item.tokens, marked)}\n\nAre the marked tokens ones where the pattern is "
         "present? Answer Yes or No."},
    ]  # fmt: skip


def simulation_prompt(explanation: str, item: Item) -> list[ChatMessage]:
    lines = "\n".join(token_text(t) for t in item.tokens)
    return [
        {"role": "system", "content": SIMULATION_SYSTEM},
        {"role": "user", "content": f"Pattern: {explanation}\n\nTokens:\n{lines}"},
    ]


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_yes_no(answer: str) -> bool | None:
    """True for yes, False for no: the first word when it is one of them, else the only one of
    the two the answer holds; None when it holds neither or both."""
    words = re.findall(r"[a-z]+", answer.lower())
    if words and words[0] in ("yes", "no"):
        return words[0] == "yes"
    found = {m.lower() for m in _YES_NO.findall(answer)}
    return found.pop() == "yes" if len(found) == 1 else None


_TRAILING_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*$")


def parse_simulation(answer: str, n_tokens: int) -> list[float] | None:
    """The predicted 0..10 of each token: the number ending each non-empty line of the answer;
    None unless there are exactly ``n_tokens`` such lines, every number within 0..10."""
    values = []
    for line in answer.strip().splitlines():
        if not line.strip():
            continue
        match = _TRAILING_NUMBER.search(line)
        if match is None:
            return None
        values.append(float(match.group(1)))
    if len(values) != n_tokens or any(v > 10 for v in values):
        return None
    return values


def fuzz_marks(item: Item, correct: bool, generator: np.random.Generator) -> set[int] | None:
    """The tokens to mark: where it is strongest (``MARK_SHARE`` of the peak), or as many
    random tokens where it is silent; None when there are no silent tokens to mark."""
    acts = np.asarray(item.activations)
    strong = set(np.flatnonzero(acts >= MARK_SHARE * acts.max()).tolist())
    if correct:
        return strong
    silent = np.flatnonzero(acts <= 0)
    if not len(silent):
        return None
    return set(generator.choice(silent, size=min(len(strong), len(silent)), replace=False).tolist())


# -- the run ----------------------------------------------------------------------------------


def held_out_items(index: FeatureIndex, feature: int, cfg: ScoreConfig) -> list[Item]:
    """``cfg.activating`` firing held-out contexts (in turn from each quantile, highest first)
    then ``cfg.silent`` silent ones (near misses first)."""
    by_quantile: dict[int, list] = {}
    for q, e in index.examples(feature, "heldout"):
        by_quantile.setdefault(q or 0, []).append(e)
    queues = [by_quantile[q] for q in sorted(by_quantile, reverse=True)]
    firing: list[Example] = []
    while len(firing) < cfg.activating and any(queues):
        for queue in queues:
            if queue and len(firing) < cfg.activating:
                firing.append(queue.pop(0))
    silent = [
        e for _, e in index.examples(feature, "near") + index.examples(feature, "heldout_zero")
    ]
    items = [Item(e.tokens, e.activations, True) for e in firing]
    return items + [Item(e.tokens, e.activations, False) for e in silent[: cfg.silent]]


@dataclass
class ScoreRun:
    """What one ``score_explanations`` call did."""

    scorer: str
    scored: list[tuple[int, str]] = field(default_factory=list)
    """(explanation id, method) scored by this call."""
    already: int = 0
    """(explanation, method) pairs already scored by this scorer: skipped, not paid."""
    unscorable: list[int] = field(default_factory=list)
    """Features without a held-out firing context (they fire too rarely): not scored."""
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    n_unparsed: int = 0


def _method_conversations(
    method: str, explanation: str, items: list[Item], seed: int, feature: int
) -> tuple[list[list[ChatMessage]], list]:
    """The conversations of one method and what each answer is checked against."""
    if method == "detection":
        return [detection_prompt(explanation, it) for it in items], [it.firing for it in items]
    if method == "simulation":
        return [simulation_prompt(explanation, it) for it in items], [
            it.activations for it in items
        ]
    # fuzzing: firing contexts only, an exact half (rounded down) marked correctly; the same
    # marks for every explanation of the feature, from a generator seeded by the feature
    gen = np.random.default_rng([seed, feature])
    firing = [it for it in items if it.firing]
    correct = np.zeros(len(firing), dtype=bool)
    correct[: len(firing) // 2] = True
    gen.shuffle(correct)
    conversations, truth = [], []
    for it, right in zip(firing, correct.tolist(), strict=True):
        marks = fuzz_marks(it, right, gen)
        if marks is not None:
            conversations.append(fuzzing_prompt(explanation, it, marks))
            truth.append(right)
    return conversations, truth


def _sampling(method: str, items: list[Item]) -> Sampling:
    if method != "simulation":
        # Room for a sentence: small models answer "The token ... is present. Yes" rather than
        # a bare "Yes" (4 tokens cut SmolLM2-135M off before either word in most fuzzing answers).
        return Sampling(max_tokens=24)
    longest = max((len(it.tokens) for it in items), default=1)
    return Sampling(max_tokens=8 * longest + 16)  # a token, a tab and a number per line


def score_explanations(
    index: FeatureIndex,
    backend: ChatBackend,
    cfg: ScoreConfig = ScoreConfig(),
    features: Sequence[int] | None = None,
) -> ScoreRun:
    """Score every parsed explanation of ``features`` (None: every explained feature) by each of
    ``cfg.methods`` with ``backend``, committing each (explanation, method) as it is done; ones
    already scored by this backend and ``PROMPT_VERSION`` are skipped."""
    store.require_current(index.db, index.path, "score")
    db, run = index.db, ScoreRun(scorer=backend.name)
    wanted = None if features is None else {index.check(f) for f in features}
    rows = db.execute(
        "SELECT id, feature, explanation FROM explanations WHERE explanation IS NOT NULL "
        "ORDER BY feature, id"
    ).fetchall()
    done = {
        (int(e), str(m))
        for e, m in db.execute(
            "SELECT explanation, method FROM scores WHERE scorer = ? AND prompt_version = ?",
            (backend.name, PROMPT_VERSION),
        )
    }
    items: dict[int, list[Item]] = {}
    for explanation_id, feature, text in rows:
        if wanted is not None and feature not in wanted:
            continue
        if feature not in items:
            items[feature] = held_out_items(index, feature, cfg)
            if not any(it.firing for it in items[feature]):
                run.unscorable.append(feature)
        if not any(it.firing for it in items[feature]):
            continue
        for method in cfg.methods:
            if (explanation_id, method) in done:
                run.already += 1
                continue
            conversations, truth = _method_conversations(
                method, text, items[feature], cfg.seed, feature
            )
            replies = backend.chat_many(conversations, _sampling(method, items[feature]))
            if method == "simulation":
                parsed = [
                    parse_simulation(r.text, len(t)) for r, t in zip(replies, truth, strict=True)
                ]
                score = simulation_score(truth, parsed, cfg.bootstrap, cfg.seed)
            else:
                answers = [parse_yes_no(r.text) for r in replies]
                score = classification_score(truth, answers, cfg.bootstrap, cfg.seed)
            prompt = sum(r.prompt_tokens for r in replies)
            completion = sum(r.completion_tokens for r in replies)
            _store(db, explanation_id, method, backend.name, score, prompt, completion)
            run.scored.append((explanation_id, method))
            run.calls += len(replies)
            run.prompt_tokens += prompt
            run.completion_tokens += completion
            run.n_unparsed += score.n_unparsed
    return run


def _store(db: sqlite3.Connection, explanation: int, method: str, scorer: str, score: Score,
           prompt: int, completion: int) -> None:  # fmt: skip
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with db:
        db.execute(
            "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (explanation, method, scorer, PROMPT_VERSION, _finite(score.score),
             _finite(score.ci_low), _finite(score.ci_high), score.n, score.n_unparsed,
             prompt, completion, created),
        )  # fmt: skip


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
