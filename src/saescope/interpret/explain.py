"""Explanations of features, written by an LLM from the index's examples (Bills et al. 2023).

The explainer sees excerpts of the contexts where a feature fires, each token on its own line
followed by a tab and the feature's activation there quantised to 0..10 (tab-separated lists
are what Bills et al. found LLMs read best): the ``top`` highest-activating contexts, then
``samples`` contexts sampled uniformly where it fires, taken from the highest quantile down so
that it is not judged by its extremes alone; optionally the tokens it promotes as a hint. The
task is phrased as finding a pattern in text rather than "what does this neuron do" (GDM found
that better), after a few worked examples of different kinds of feature (a word, a topic, a
piece of syntax). The explainer never sees the index's held-out examples, which score it.

Every explanation is stored in the index (``explanations``) with the explainer's name, the
``PROMPT_VERSION`` and its tokens, and committed after each batch of features: a killed run
started again skips every feature already explained by that explainer and prompt version, so
no feature is paid for twice. Beside each, two baselines that any score must beat: the
feature's commonest peak tokens (no LLM) and the explanation of a random other feature.
"""

from __future__ import annotations

import datetime
import logging
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from saescope.errors import SaescopeError
from saescope.interpret import store
from saescope.interpret.llm import ChatBackend, ChatMessage, Sampling
from saescope.interpret.neurons import Example
from saescope.interpret.query import FeatureIndex, FeatureRecord

log = logging.getLogger(__name__)

PROMPT_VERSION = "explain/1"
"""Stored beside every explanation; change it whenever the prompt's text changes, so that a
resumed run never mixes two prompts under one name."""
MAX_WORDS = 40
"""A longer "explanation" is the model rambling, not an answer: it does not parse."""

SYSTEM = (
    "You find patterns in text. You will see excerpts of text, one token per line. After each "
    "token comes a tab and a number from 0 to 10 saying how strongly a hidden pattern is "
    "present at that token: 0 means absent, 10 means strongest. Work out what the tokens with "
    "high numbers have in common, and in which contexts they occur. Answer with one line: "
    '"Pattern: " followed by a short description (a few words, at most one sentence) of the '
    "pattern. Describe the text, not the numbers or the format."
)


@dataclass(frozen=True)
class ExplainConfig:
    """What the explainer is shown and how it answers."""

    top: int = 10
    """Highest-activating contexts shown."""
    samples: int = 6
    """Contexts sampled where the feature fires, shown from the highest quantile down."""
    hint: bool = False
    """Also list the tokens the feature's write direction promotes most."""
    hint_tokens: int = 8
    """How many promoted tokens the hint lists."""
    max_tokens: int = 64
    """The most tokens of an answer."""
    batch: int = 8
    """Features per ``chat_many`` call; the run commits after each batch."""
    seed: int = 0
    """Picks the random-feature baseline's other feature."""

    def __post_init__(self) -> None:
        for name in ("top", "hint_tokens", "max_tokens", "batch"):
            if getattr(self, name) < 1:
                raise SaescopeError(f"explain {name} must be >= 1, got {getattr(self, name)}")
        if self.samples < 0:
            raise SaescopeError(f"explain samples must be >= 0, got {self.samples}")


# -- the prompt -------------------------------------------------------------------------------


def quantise(activations: Sequence[float], scale: float) -> list[int]:
    """Activations as integers 0..10, 10 at ``scale`` (the largest activation shown)."""
    if scale <= 0:
        return [0] * len(activations)
    return [int(min(10, max(0, round(10 * a / scale)))) for a in activations]


def token_text(token: str) -> str:
    """A token as it is written on its own line: newlines and tabs spelled out."""
    return token.replace("\n", "\\n").replace("\t", "\\t")


def excerpt_lines(tokens: Sequence[str], values: Sequence[int]) -> str:
    return "\n".join(f"{token_text(t)}\t{v}" for t, v in zip(tokens, values, strict=True))


def format_excerpts(examples: Sequence[Example], scale: float) -> str:
    return "\n\n".join(
        f"Excerpt {i}:\n" + excerpt_lines(e.tokens, quantise(e.activations, scale))
        for i, e in enumerate(examples, 1)
    )


def shown_examples(record: FeatureRecord, cfg: ExplainConfig) -> list[Example]:
    """The ``top`` best contexts, then ``samples`` sampled ones taken in turn from each
    quantile, highest first (the highest-ranked of each first), skipping contexts already shown."""
    shown = list(record.top[: cfg.top])
    seen = {e.context for e in shown}
    by_quantile: dict[int, list[Example]] = {}
    for q, e in record.samples:
        if e.context not in seen:
            by_quantile.setdefault(q, []).append(e)
    queues = [by_quantile[q] for q in sorted(by_quantile, reverse=True)]
    taken = 0
    while taken < cfg.samples and any(queues):
        for queue in queues:
            if queue and taken < cfg.samples:
                shown.append(queue.pop(0))
                taken += 1
    return shown


def _few_shot_example(words: list[tuple[str, int]]) -> Example:
    return Example(
        activation=float(max(v for _, v in words)),
        context=0,
        position=0,
        tokens=[w for w, _ in words],
        activations=[float(v) for _, v in words],
        focus=0,
    )


FEW_SHOT: tuple[tuple[list[list[tuple[str, int]]], str], ...] = (
    (  # one word, whatever the context
        [
            [("The", 0), (" ship", 0), (" crossed", 0), (" the", 0), (" ocean", 10), (" in", 0)],
            [("Waves", 0), (" of", 0), (" the", 0), (" sea", 8), (" broke", 1)],
            [(" fish", 0), (" live", 0), (" in", 0), (" the", 0), (" oceans", 9), (".", 0)],
        ],
        "the words ocean and sea",
    ),
    (  # a topic: the whole context, strongest on its key words
        [
            [("Stir", 3), (" the", 2), (" flour", 8), (" into", 2), (" the", 2), (" butter", 9)],
            [(" bake", 7), (" for", 2), (" 20", 3), (" minutes", 4), (" until", 2), (" golden", 6)],
            [(" add", 2), (" a", 1), (" pinch", 5), (" of", 2), (" salt", 10)],
        ],
        "ingredients and steps of cooking recipes",
    ),
    (  # syntax: a position, not a word
        [
            [("He", 0), (" said", 0), (" (", 0), ("quietly", 10), (")", 0), (" that", 0)],
            [("the", 0), (" result", 0), (" (", 0), ("see", 9), (" below", 2), (")", 0)],
            [(" a", 0), (" value", 0), (" (", 0), ("0", 8), (".", 1), ("5", 0), (")", 0)],
        ],
        "the first token inside parentheses",
    ),
)
"""Worked examples shown before every feature: (excerpts as (token, value) pairs, answer)."""


def _task(excerpts: str, hint: str = "") -> str:
    return (
        f'{excerpts}\n\n{hint}What is the pattern? Answer with one line starting with "Pattern:".'
    )


def explain_prompt(
    record: FeatureRecord, cfg: ExplainConfig = ExplainConfig()
) -> list[ChatMessage]:
    """The conversation that asks for ``record``'s explanation."""
    messages: list[ChatMessage] = [{"role": "system", "content": SYSTEM}]
    for excerpts, answer in FEW_SHOT:
        examples = [_few_shot_example(e) for e in excerpts]
        messages.append({"role": "user", "content": _task(format_excerpts(examples, 10.0))})
        messages.append({"role": "assistant", "content": f"Pattern: {answer}"})
    shown = shown_examples(record, cfg)
    scale = max((max(e.activations, default=0.0) for e in shown), default=0.0)
    hint = ""
    if cfg.hint and record.promoted:
        listed = ", ".join(repr(t) for t, _ in record.promoted[: cfg.hint_tokens])
        hint = f"Tokens that often come right after the pattern: {listed}.\n\n"
    messages.append({"role": "user", "content": _task(format_excerpts(shown, scale), hint)})
    return messages


_MARKER = re.compile(r"^[\W_]*(?:pattern|explanation)[\W_]*:\s*(.*)$", re.IGNORECASE | re.MULTILINE)


def parse_explanation(answer: str) -> str | None:
    """The explanation in an answer, or None when there is none.

    Parsed: the text after the first "Pattern:" (or "Explanation:") that starts a line, up to
    the end of that line; failing that, an answer of a single line. Quotes and a final full
    stop are stripped. None when that leaves nothing, or more than ``MAX_WORDS`` words.
    """
    match = _MARKER.search(answer)
    if match is not None:
        text = match.group(1)
    else:
        lines = [line for line in answer.strip().splitlines() if line.strip()]
        if len(lines) != 1:
            return None
        text = lines[0]
    text = text.strip(" \t\"'`*").rstrip(".").strip(" \t\"'`*")
    if not text or len(text.split()) > MAX_WORDS:
        return None
    return text


# -- baselines --------------------------------------------------------------------------------


def peaks_explanation(peaks: list[tuple[str, int]], shown: int = 3) -> str | None:
    """The no-LLM baseline: the tokens the feature's top examples peak on most often."""
    if not peaks:
        return None
    tokens = [repr(t) for t, _ in peaks[:shown]]
    return ("the token " if len(tokens) == 1 else "the tokens ") + ", ".join(tokens)


# -- the run ----------------------------------------------------------------------------------


@dataclass
class ExplainRun:
    """What one ``explain_features`` call did."""

    explainer: str
    explained: list[int] = field(default_factory=list)
    """Features explained by this call (one LLM call each)."""
    already: list[int] = field(default_factory=list)
    """Features already explained by this explainer and prompt version: skipped, not paid."""
    dead: list[int] = field(default_factory=list)
    """Features that never fired in the index: nothing to explain."""
    unparsed: list[int] = field(default_factory=list)
    """Features whose answer (by this call) could not be parsed: stored, never scored."""
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _insert(db: sqlite3.Connection, feature: int, explainer: str, text: str | None,
            answer: str, source: int | None = None, prompt: int = 0, completion: int = 0) -> None:  # fmt: skip
    db.execute(
        "INSERT OR IGNORE INTO explanations (feature, explainer, prompt_version, explanation, "
        "answer, source_feature, prompt_tokens, completion_tokens, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (feature, explainer, PROMPT_VERSION, text, answer, source, prompt, completion, _now()),
    )


def _done(db: sqlite3.Connection, explainer: str) -> set[int]:
    rows = db.execute(
        "SELECT feature FROM explanations WHERE explainer = ? AND prompt_version = ?",
        (explainer, PROMPT_VERSION),
    )
    return {int(f) for (f,) in rows}


def explain_features(
    index: FeatureIndex,
    features: Sequence[int],
    backend: ChatBackend,
    cfg: ExplainConfig = ExplainConfig(),
) -> ExplainRun:
    """Explain ``features`` of ``index`` with ``backend`` and store the explanations and both
    baselines; features already explained by this backend and ``PROMPT_VERSION`` are skipped."""
    store.require_current(index.db, index.path, "explain")
    db, name = index.db, backend.name
    run = ExplainRun(explainer=name)
    fires = dict(db.execute("SELECT feature, fires FROM features").fetchall())
    done = _done(db, name)
    todo: list[int] = []
    for f in dict.fromkeys(index.check(f) for f in features):  # in order, once each
        if fires[f] == 0:
            run.dead.append(f)
        elif f in done:
            run.already.append(f)
        else:
            todo.append(f)
    with db:
        for f in [f for f in features if fires[f] > 0]:
            _insert(db, f, store.EXPLAINER_PEAKS, peaks_explanation(index.peaks(f)), "")
    sampling = Sampling(max_tokens=cfg.max_tokens)
    for start in range(0, len(todo), cfg.batch):
        chunk = todo[start : start + cfg.batch]
        prompts = [explain_prompt(index.feature(f), cfg) for f in chunk]
        replies = backend.chat_many(prompts, sampling)
        with db:  # one transaction per batch: a kill loses at most the batch in flight
            for f, reply in zip(chunk, replies, strict=True):
                text = parse_explanation(reply.text)
                _insert(db, f, name, text, reply.text, None, reply.prompt_tokens,
                        reply.completion_tokens)  # fmt: skip
                run.explained.append(f)
                run.unparsed += [] if text else [f]
                run.prompt_tokens += reply.prompt_tokens
                run.completion_tokens += reply.completion_tokens
        log.info("explained %d of %d features", start + len(chunk), len(todo))
    _random_baselines(db, [f for f in features if fires[f] > 0], name, cfg.seed)
    return run


def _random_baselines(
    db: sqlite3.Connection, features: list[int], explainer: str, seed: int
) -> None:
    """For each of ``features`` explained by ``explainer``, the explanation of another feature it
    explained, drawn with a generator seeded by (``seed``, feature) so that a resumed run draws
    what an uninterrupted one would."""
    rows = db.execute(
        "SELECT feature, explanation FROM explanations WHERE explainer = ? AND "
        "prompt_version = ? AND explanation IS NOT NULL ORDER BY feature",
        (explainer, PROMPT_VERSION),
    ).fetchall()
    texts = dict(rows)
    baseline = f"{store.EXPLAINER_RANDOM}:{explainer}"
    have = _done(db, baseline)
    with db:
        for f in features:
            others = [g for g in texts if g != f]
            if f in have or f not in texts or not others:
                continue
            other = others[int(np.random.default_rng([seed, f]).integers(len(others)))]
            _insert(db, f, baseline, texts[other], "", other)
