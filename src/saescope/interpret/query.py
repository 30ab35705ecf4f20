"""Reading a feature index: one feature's record, short descriptions, word search.

A short description shows where a feature is largest (the tokens its top examples peak on) and,
when that is not where it usually fires, where it usually fires too (its uniform sample):
``top: "'"×20; typically: ' pasta'×2, ' kitchen'×1, ' garden'×1``. On Gemma 3 270M a few
outlier tokens carry ~10x the residual norm of the rest, and features that fire on them at the
top fire on ordinary words the rest of the time (issue #19); the top examples alone describe
those features by the outlier only. Dense features are marked ``[dense 47%]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saescope.errors import SaescopeError
from saescope.interpret import store
from saescope.interpret.collect import PAD_TOKEN
from saescope.interpret.neurons import Example

DENSE_DENSITY = 0.10
"""A feature firing on more than this fraction of tokens is dense: flagged wherever it is shown,
since its top contexts rarely say what it does on the rest (issue #13, #19)."""


def is_dense(density: float) -> bool:
    return density > DENSE_DENSITY


TYPICAL_AGREEMENT = 0.3
"""A feature's top examples speak for it when at least this share of its sampled contexts (the
uniform sample of where it fires) peak on a token its top examples show (one of the
``SHOWN_PEAKS`` commonest top peaks, compared without case or surrounding space); below it, top
and typical disagree and the description shows both. On the quickstart SAE (layer 6 of Gemma 3
270M, 10 samples a feature) 2,341 of the 7,765 features that fire fall below 0.3 (fewer than
3 of 10 samples on a shown token): 901 below 0.1, 3,389 below 0.5."""
MIN_SAMPLES = 3
"""Fewer sampled contexts than this say too little to overrule the top examples."""


def peak_counts(peaks: Iterable[tuple[str, float]]) -> list[tuple[str, int]]:
    """(token, count) of (peak token, activation) pairs, commonest first; among equal counts the
    token of the larger activation first, then by text (the order ``peaks`` rows have)."""
    count: dict[str, int] = {}
    best: dict[str, float] = {}
    for token, value in peaks:
        count[token] = count.get(token, 0) + 1
        best[token] = max(best.get(token, value), value)
    return sorted(count.items(), key=lambda tc: (-tc[1], -best[tc[0]], tc[0]))


def _norm(token: str) -> str:
    return token.strip().lower()


def agreement(peaks: list[tuple[str, int]], typical: list[tuple[str, int]]) -> float:
    """The share of sampled contexts whose peak token is one of the shown top peaks."""
    shown = {_norm(t) for t, _ in peaks[:SHOWN_PEAKS]}
    total = sum(n for _, n in typical)
    return sum(n for t, n in typical if _norm(t) in shown) / total if total else 1.0


def describe_feature(
    peaks: list[tuple[str, int]],
    typical: list[tuple[str, int]],
    density: float,
    explanation: str | None = None,
) -> str:
    """The one rule for a feature's short description: its explanation if it has one; else the
    tokens its top examples peak on, followed by where it typically fires when the two disagree
    (``agreement`` < ``TYPICAL_AGREEMENT`` over at least ``MIN_SAMPLES`` samples); prefixed by
    ``[dense 47%]`` when it is dense (``is_dense``)."""
    if explanation:
        text = explanation
    elif (
        sum(n for _, n in typical) >= MIN_SAMPLES and agreement(peaks, typical) < TYPICAL_AGREEMENT
    ):
        text = f"top: {peaks_text(peaks)}; typically: {peaks_text(typical)}"
    else:
        text = peaks_text(peaks)
    return f"[dense {density:.0%}] {text}" if is_dense(density) else text


@dataclass(frozen=True)
class ScoreRecord:
    """How well one explanation predicted where its feature fires, by one method and scorer."""

    method: str
    """``detection`` or ``fuzzing`` (balanced accuracy) or ``simulation`` (correlation)."""
    scorer: str
    """The scorer model's name."""
    score: float | None
    """None when no answer of the scorer could be parsed."""
    ci_low: float | None
    ci_high: float | None
    """The 95% bootstrap interval of ``score``."""
    n: int
    """Items scored (contexts; for simulation, contexts whose every token was predicted)."""
    n_unparsed: int
    """Answers that could not be parsed: counted here, never scored."""


@dataclass(frozen=True)
class ExplanationRecord:
    """One explanation of a feature, by a model or a baseline, with its scores."""

    id: int
    explainer: str
    """The model that wrote it, or a baseline (``store.EXPLAINER_PEAKS``, or
    ``store.EXPLAINER_RANDOM`` + ':' + the model whose explanation of ``source_feature`` it is)."""
    prompt_version: str
    text: str | None
    """None when the model's answer could not be parsed."""
    source_feature: int | None
    prompt_tokens: int
    completion_tokens: int
    scores: list[ScoreRecord] = field(default_factory=list)

    @property
    def baseline(self) -> bool:
        return self.explainer.startswith("baseline:")

    def score(self, method: str) -> ScoreRecord | None:
        """The score by ``method`` (the first scorer's, by name, if several scored it)."""
        return next((s for s in self.scores if s.method == method), None)


def best_explanation(explanations: list[ExplanationRecord]) -> ExplanationRecord | None:
    """The explanation a feature is described by: among the models' parsed ones (baselines
    never), the one with the highest score by any method, unscored ones after scored ones and,
    among those, the newest."""
    written = [e for e in explanations if e.text and not e.baseline]
    if not written:
        return None

    def key(e: ExplanationRecord) -> tuple[float, int]:
        scores = [s.score for s in e.scores if s.score is not None]
        return (max(scores) if scores else float("-inf"), e.id)

    return max(written, key=key)


@dataclass(frozen=True)
class FeatureRecord:
    """Everything the index knows about one feature."""

    feature: int
    fires: int
    density: float
    """Fraction of the indexed tokens it fires on."""
    mean_activation: float | None
    max_activation: float
    histogram: np.ndarray
    """(bins,) counts of log10 activation over ``FeatureIndex.histogram_edges``."""
    peaks: list[tuple[str, int]]
    """(token, how many top examples peak on it), most common first."""
    top: list[Example]
    """The contexts where it is largest, largest first."""
    samples: list[tuple[int, Example]]
    """(quantile, example): a uniform sample of the contexts where it fires, by activation."""
    zeros: list[Example]
    """Contexts where it does not fire."""
    promoted: list[tuple[str, float]]
    suppressed: list[tuple[str, float]]
    neighbours: list[tuple[int, float]]
    """(feature, decoder cosine), nearest first."""
    neurons: list[tuple[int, float]]
    """(neuron, decoder weight) for SAEs on MLP neurons; empty otherwise."""
    explanation: str | None = None
    """The text of ``best_explanation(explanations)``."""
    explanations: list[ExplanationRecord] = field(default_factory=list)
    """Every explanation of it (models' and baselines'), oldest first, each with its scores."""

    @property
    def top_tokens(self) -> str:
        """The commonest peak tokens for display: ``' sea'×12, ' ocean'×3``."""
        return peaks_text(self.peaks)

    @property
    def typical(self) -> list[tuple[str, int]]:
        """(token, count): the tokens its sampled contexts peak on, commonest first."""
        return peak_counts((e.tokens[e.focus], e.activation) for _, e in self.samples)

    @property
    def description(self) -> str:
        """The short description (``describe_feature``)."""
        return describe_feature(self.peaks, self.typical, self.density, self.explanation)

    @property
    def dense(self) -> bool:
        return is_dense(self.density)


SEARCH_ORDER = (
    ("peak", True), ("explanation", True), ("promoted", True),
    ("peak", False), ("explanation", False), ("promoted", False),
    ("context", True), ("context", False),
)  # fmt: skip
"""(what matched, whether a whole word): how a word search ranks its kinds of match, best
first (``SearchHit.reason`` and ``.whole``)."""


@dataclass(frozen=True)
class SearchHit:
    feature: int
    score: float
    """How concentrated the feature is on the match, 0..1 (``FeatureIndex.search``)."""
    peaks: list[tuple[str, int]]
    """(token, count) its top examples peak on, most common first (``FeatureRecord.peaks``)."""
    density: float
    reason: str = "peak"
    """What matched: ``peak``, ``explanation``, ``promoted`` or ``context``: a token its top or sampled examples peak on, its
    explanation, a token it promotes, the text of its examples."""
    whole: bool = True
    """Whether the query matched a whole token or word (' cook', not ' cookie')."""
    matched: tuple[str, ...] = ()
    """The matching tokens (peak, promoted), or the matching explanation."""

    @property
    def top_tokens(self) -> str:
        return peaks_text(self.peaks)

    @property
    def dense(self) -> bool:
        return is_dense(self.density)


class Firing(NamedTuple):
    """How every feature fires over the indexed tokens, each (n_features,) float64."""

    density: np.ndarray
    mean: np.ndarray
    """Mean activation when firing; NaN where a feature never fired."""
    sampled_median: np.ndarray
    """Median activation of its sampled contexts (each a uniformly drawn context where it fires,
    at that context's peak): its typical strength where it is on; NaN where none was sampled."""


class FeatureStats(NamedTuple):
    """One feature's row of ``FeatureIndex.table``."""

    feature: int
    fires: int
    density: float
    mean_activation: float | None
    max_activation: float


SHOWN_PEAKS = 3
"""Peak tokens in a feature's short description (top and typical parts each)."""


def peaks_text(peaks: list[tuple[str, int]], shown: int = SHOWN_PEAKS) -> str:
    """``' sea'×12, ' ocean'×3``: the first ``shown`` (token, count) pairs (repr shows spaces)."""
    return ", ".join(f"{token!r}×{count}" for token, count in peaks[:shown])


def _like(text: str) -> str:
    """``text`` as a LIKE pattern that matches it literally (``%`` and ``_`` escaped by ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _word_pattern(word: str) -> re.Pattern[str]:
    """``word`` as a whole word: not inside a longer run of letters or digits."""
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)


def _focus_token(blob: bytes, focus: int) -> int:
    """The token id at ``focus`` of a stored ``token_ids`` window."""
    return int.from_bytes(blob[4 * focus : 4 * focus + 4], "little", signed=True)


class FeatureIndex:
    """An index file opened for reading: ``FeatureIndex("index.db").feature(6605)``."""

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.db = store.open_db(self.path, read_only=read_only)
        self.meta: dict[str, Any] = {
            k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")
        }
        self.n_features = int(self.meta["features"])
        self.format = str(self.meta["format"])
        self.histogram_edges = np.asarray(self.meta["histogram_log10_edges"])
        self._texts: dict[int, str] = {}

    def __enter__(self) -> FeatureIndex:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def __repr__(self) -> str:
        return (
            f"FeatureIndex({str(self.path)!r}: {self.n_features:,} {self.meta['source']['kind']} "
            f"features at {self.meta['site']}, {self.meta['tokens']:,} tokens)"
        )

    def check(self, feature: int) -> int:
        if not 0 <= feature < self.n_features:
            raise SaescopeError(
                f"feature {feature} does not exist: this index has features 0..{self.n_features - 1}"
            )
        return feature

    def _token(self, token: int) -> str:
        # Cached: an export reads every feature's windows, ~30 examples x 26 tokens each.
        text = self._texts.get(token)
        if text is None:
            row = self.db.execute("SELECT text FROM tokens WHERE id = ?", (token,)).fetchone()
            text = self._texts[token] = row[0] if row else f"<{token}>"
        return text

    def _examples(self, feature: int, kind: str) -> list[tuple[int | None, Example]]:
        rows = self.db.execute(
            "SELECT activation, quantile, context, position, focus, token_ids, activations "
            "FROM examples WHERE feature = ? AND kind = ? ORDER BY rank",
            (feature, kind),
        ).fetchall()
        out = []
        for act, quantile, context, position, focus, ids_blob, acts_blob in rows:
            ids = np.frombuffer(ids_blob, dtype="<i4")
            acts = np.frombuffer(acts_blob, dtype=store.ACT_DTYPE).astype(np.float32)
            keep = ids != PAD_TOKEN
            shift = int((~keep[:focus]).sum())
            example = Example(
                activation=act,
                context=context,
                position=position,
                tokens=[self._token(int(t)) for t in ids[keep]],
                activations=acts[keep].tolist(),
                focus=focus - shift,
            )
            out.append((quantile, example))
        return out

    def feature(self, feature: int) -> FeatureRecord:
        f = self.check(feature)
        row = self.db.execute(
            "SELECT fires, density, mean_activation, max_activation, histogram FROM features "
            "WHERE feature = ?",
            (f,),
        ).fetchone()
        fires, density, mean, peak, hist = row
        logits = self.db.execute(
            "SELECT sign, tokens.text, value FROM logits JOIN tokens ON tokens.id = logits.token "
            "WHERE feature = ? ORDER BY sign DESC, rank",
            (f,),
        ).fetchall()
        explanations = self.explanations(f)
        best = best_explanation(explanations)
        return FeatureRecord(
            feature=f,
            fires=fires,
            density=density,
            mean_activation=mean,
            max_activation=peak,
            histogram=np.frombuffer(hist, dtype="<i4"),
            peaks=self.peaks(f),
            top=[e for _, e in self._examples(f, "top")],
            samples=[(q or 0, e) for q, e in self._examples(f, "sample")],
            zeros=[e for _, e in self._examples(f, "zero")],
            promoted=[(t, v) for sign, t, v in logits if sign > 0],
            suppressed=[(t, v) for sign, t, v in logits if sign < 0],
            neighbours=self._pairs("SELECT other, cosine FROM neighbours", f),
            neurons=self._pairs("SELECT neuron, weight FROM neurons", f),
            explanation=best.text if best else None,
            explanations=explanations,
        )

    def explanations(self, feature: int) -> list[ExplanationRecord]:
        """Every explanation of ``feature`` with its scores, oldest first (none in an index of
        an older format, whose explanation table is another)."""
        if self.format != store.FORMAT:
            return []
        scores: dict[int, list[ScoreRecord]] = {}
        for row in self.db.execute(
            "SELECT s.explanation, method, scorer, score, ci_low, ci_high, n, n_unparsed "
            "FROM scores s JOIN explanations e ON e.id = s.explanation WHERE e.feature = ? "
            "ORDER BY method, scorer",
            (self.check(feature),),
        ):
            scores.setdefault(row[0], []).append(ScoreRecord(*row[1:]))
        return [
            ExplanationRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], scores.get(r[0], []))
            for r in self.db.execute(
                "SELECT id, explainer, prompt_version, explanation, source_feature, "
                "prompt_tokens, completion_tokens FROM explanations WHERE feature = ? ORDER BY id",
                (feature,),
            )
        ]

    def examples(self, feature: int, kind: str) -> list[tuple[int | None, Example]]:
        """(quantile or None, example) of one ``kind`` of stored example, by rank: 'top',
        'sample', 'zero', or the held-out 'heldout', 'near', 'heldout_zero' (scoring's)."""
        return self._examples(self.check(feature), kind)

    def _pairs(self, select: str, feature: int) -> list[tuple[int, float]]:
        rows = self.db.execute(f"{select} WHERE feature = ? ORDER BY rank", (feature,))
        return [(int(a), float(b)) for a, b in rows]

    def table(self) -> list[FeatureStats]:
        """Every feature's counts and activations in one read, by feature (for a sortable
        table of all features; ``feature`` reads the rest of one)."""
        rows = self.db.execute(
            "SELECT feature, fires, density, mean_activation, max_activation FROM features "
            "ORDER BY feature"
        )
        return [FeatureStats(int(f), int(n), float(d), m, float(x)) for f, n, d, m, x in rows]

    def firing(self) -> Firing:
        """Every feature's density, mean activation when firing and median sampled peak."""
        firing = Firing(
            np.zeros(self.n_features),
            np.full(self.n_features, np.nan),
            np.full(self.n_features, np.nan),
        )
        for f, d, m in self.db.execute("SELECT feature, density, mean_activation FROM features"):
            firing.density[f], firing.mean[f] = d, np.nan if m is None else m
        sampled: dict[int, list[float]] = {}
        for f, a in self.db.execute(
            "SELECT feature, activation FROM examples WHERE kind = 'sample'"
        ):
            sampled.setdefault(f, []).append(a)
        for f, values in sampled.items():
            firing.sampled_median[f] = np.median(values)
        return firing

    def peaks(self, feature: int) -> list[tuple[str, int]]:
        """(token, count): the tokens the feature's top examples peak on, commonest first."""
        rows = self.db.execute(
            "SELECT tokens.text, count FROM peaks JOIN tokens ON tokens.id = peaks.token "
            "WHERE feature = ? ORDER BY rank",
            (self.check(feature),),
        )
        return [(str(text), int(count)) for text, count in rows]

    def typical(self, feature: int) -> list[tuple[str, int]]:
        """(token, count): the tokens its sampled contexts peak on, commonest first
        (``FeatureRecord.typical`` without reading the whole record)."""
        rows = self.db.execute(
            "SELECT token_ids, focus, activation FROM examples WHERE feature = ? AND kind = 'sample'",
            (self.check(feature),),
        )
        return peak_counts((self._token(_focus_token(ids, focus)), act) for ids, focus, act in rows)

    def describe(self, features: list[int]) -> dict[int, str]:
        """A short description of each feature (``describe_feature``): its explanation if it has
        one, else the tokens its top examples peak on and, when they disagree, where it typically
        fires; dense features marked."""
        out: dict[int, str] = {}
        for f in features:
            best = best_explanation(self.explanations(self.check(f)))
            (density,) = self.db.execute(
                "SELECT density FROM features WHERE feature = ?", (f,)
            ).fetchone()
            text = best.text if best else None
            out[f] = describe_feature(self.peaks(f), self.typical(f), density, text)
        return out

    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """Features matching the word ``query`` (case-insensitive), best first.

        Each feature is ranked by its best match, in this order: a whole token it peaks on (in
        its top or its sampled examples: ' cook' for "cook"), a whole word of its explanation, a
        whole token it promotes; then the same three matching part of a token (' cookie'); then
        the text of its examples, a whole word before a part. Within one kind of match, by
        ``score``, how concentrated the feature is on it: for a peak, the share of its top
        examples and of its sampled examples (the mean of the two) that peak on a matching
        token; for a promoted token, the share of its promoted tokens that match; for a context,
        the same mean share of examples whose text matches; for an explanation, its best score (0 if
        unscored). Features that never fired in the index are left out.
        """
        word = query.strip().lower()
        if not word:
            raise SaescopeError("the search query is empty")
        whole_word = _word_pattern(word)
        tokens = {
            int(i): str(t)
            for i, t in self.db.execute("SELECT id, text FROM tokens")
            if word in str(t).lower()
        }
        whole = {i for i, t in tokens.items() if _norm(t) == word}
        best: dict[int, tuple[int, float, SearchHit]] = {}

        def offer(feature: int, reason: str, is_whole: bool, score: float, matched: tuple) -> None:
            tier = SEARCH_ORDER.index((reason, is_whole))
            if feature not in best or (tier, -score) < (best[feature][0], -best[feature][1]):
                best[feature] = (
                    tier,
                    score,
                    SearchHit(feature, score, [], 0.0, reason, is_whole, matched),
                )

        for ids, is_whole in ((whole, True), (set(tokens) - whole, False)):
            for f, (score, matched) in self._peak_matches(ids).items():
                offer(f, "peak", is_whole, score, tuple(tokens[i] for i in matched))
            for f, (score, matched) in self._promoted_matches(ids).items():
                offer(f, "promoted", is_whole, score, tuple(tokens[i] for i in matched))
        for f, text, best_score in self._explanation_texts():
            if word in text.lower():
                offer(f, "explanation", bool(whole_word.search(text)), best_score or 0.0, (text,))
        for f, (score, is_whole) in self._context_matches(word, whole_word).items():
            offer(f, "context", is_whole, score, ())
        ranked = sorted(best.values(), key=lambda t: (t[0], -t[1], t[2].feature))
        hits: list[SearchHit] = []
        for _, _, hit in ranked:
            (density,) = self.db.execute(
                "SELECT density FROM features WHERE feature = ?", (hit.feature,)
            ).fetchone()
            if density == 0:  # never fired in the index: a promoted token alone says nothing
                continue
            if len(hits) == limit:
                break
            hits.append(
                SearchHit(
                    hit.feature, hit.score, self.peaks(hit.feature), density, hit.reason,
                    hit.whole, hit.matched,
                )
            )  # fmt: skip
        return hits

    def _explanation_texts(self) -> list[tuple[int, str, float | None]]:
        """(feature, text, best score) of every parsed explanation a model wrote (baselines
        are not the feature's description, so a search does not match them)."""
        if self.format != store.FORMAT:
            return []
        return self.db.execute(
            "SELECT e.feature, e.explanation, max(s.score) FROM explanations e "
            "LEFT JOIN scores s ON s.explanation = e.id "
            "WHERE e.explanation IS NOT NULL AND e.explainer NOT LIKE 'baseline:%' "
            "GROUP BY e.id"
        ).fetchall()

    def _peak_matches(self, ids: set[int]) -> dict[int, tuple[float, set[int]]]:
        """feature -> (mean share of its top and sampled examples peaking on ``ids``, the ids)."""
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        top: dict[int, int] = {}
        matched: dict[int, set[int]] = {}
        for f, token, count in self.db.execute(
            f"SELECT feature, token, count FROM peaks WHERE token IN ({marks})", sorted(ids)
        ):
            top[f] = top.get(f, 0) + count
            matched.setdefault(f, set()).add(token)
        blobs = [store.int32_blob(np.array([i])) for i in sorted(ids)]
        sampled: dict[int, int] = {}
        for f, blob in self.db.execute(
            "SELECT feature, substr(token_ids, 4 * focus + 1, 4) AS peak FROM examples "
            f"WHERE kind = 'sample' AND peak IN ({marks})",
            blobs,
        ):
            sampled[f] = sampled.get(f, 0) + 1
            matched.setdefault(f, set()).add(_focus_token(blob, 0))
        out = {}
        for f, tokens in matched.items():
            shares = [
                n / self._full(kind, total)
                for kind, n, total in (
                    ("top", top.get(f, 0), self._count("peaks", "sum(count)", f)),
                    ("sample", sampled.get(f, 0), self._count("examples", "count(*)", f, "sample")),
                )
                if total
            ]
            out[f] = (sum(shares) / len(shares), tokens)
        return out

    def _full(self, kind: str, total: int) -> int:
        """The denominator of a share of ``kind`` examples: as many as the index keeps for a
        feature that fires often (``collect.top`` / ``.samples``), so that a feature seen once,
        on the word, scores 1/20 rather than 1 (on the quickstart SAE ' war'×1, 0.000% dense,
        outranked ' War'×14 before)."""
        keeps = self.meta.get("collect", {}).get("top" if kind == "top" else "samples", 0)
        return max(total, int(keeps))

    def _count(self, table: str, what: str, feature: int, kind: str | None = None) -> int:
        where = "feature = ?" + (" AND kind = ?" if kind else "")
        args = (feature, kind) if kind else (feature,)
        (n,) = self.db.execute(f"SELECT {what} FROM {table} WHERE {where}", args).fetchone()
        return int(n or 0)

    def _promoted_matches(self, ids: set[int]) -> dict[int, tuple[float, set[int]]]:
        """feature -> (share of its promoted tokens in ``ids``, those ids)."""
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        matched: dict[int, set[int]] = {}
        for f, token in self.db.execute(
            f"SELECT feature, token FROM logits WHERE sign = 1 AND token IN ({marks})", sorted(ids)
        ):
            matched.setdefault(f, set()).add(token)
        (k,) = self.db.execute("SELECT max(rank) + 1 FROM logits WHERE sign = 1").fetchone()
        return {f: (len(t) / k, t) for f, t in matched.items()}

    def _context_matches(
        self, word: str, whole_word: re.Pattern[str]
    ) -> dict[int, tuple[float, bool]]:
        """feature -> (mean share of its top and sampled examples whose text holds the word,
        whether as a whole word); whole-word examples count when there are any."""
        if word.isascii():  # LIKE folds ASCII case only: then it can do the scan
            rows = self.db.execute(
                "SELECT feature, kind, text FROM examples WHERE kind IN ('top', 'sample') "
                "AND text LIKE ? ESCAPE '\\'",
                (f"%{_like(word)}%",),
            )
        else:
            rows = self.db.execute(
                "SELECT feature, kind, text FROM examples WHERE kind IN ('top', 'sample')"
            )
        counts: dict[int, dict[tuple[str, bool], int]] = {}
        for f, kind, text in rows:
            if word not in text.lower():
                continue
            c = counts.setdefault(f, {})
            c[kind, False] = c.get((kind, False), 0) + 1
            if whole_word.search(text):
                c[kind, True] = c.get((kind, True), 0) + 1
        out = {}
        for f, c in counts.items():
            is_whole = any(c.get((k, True)) for k in ("top", "sample"))
            shares = [
                c.get((kind, is_whole), 0) / self._full(kind, total)
                for kind in ("top", "sample")
                if (total := self._count("examples", "count(*)", f, kind))
            ]
            out[f] = (sum(shares) / len(shares), is_whole)
        return out

    def consistent_features(
        self, limit: int = 5, density: tuple[float, float] = (3e-4, 1e-2), min_letters: int = 4
    ) -> list[int]:
        """Features whose top examples agree most on the word they peak on (the easiest to read
        at a glance), within a density range, one per word; punctuation and words shorter than
        ``min_letters`` (mostly function words) are passed over."""
        rows = self.db.execute(
            "SELECT f.feature, tokens.text FROM features f "
            "JOIN peaks ON peaks.feature = f.feature AND peaks.rank = 0 "
            "JOIN tokens ON tokens.id = peaks.token "
            "WHERE density BETWEEN ? AND ? AND peak_share >= 0.5 "
            "ORDER BY peak_share DESC, max_activation DESC",
            density,
        )
        chosen: list[int] = []
        seen: set[str] = set()
        for feature, text in rows:
            word = text.strip().lower()
            if word.isalpha() and len(word) >= min_letters and word not in seen:
                seen.add(word)
                chosen.append(feature)
            if len(chosen) == limit:
                break
        return chosen
