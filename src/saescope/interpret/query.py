"""Reading a feature index: one feature's record, short descriptions, text search."""

from __future__ import annotations

import json
from dataclasses import dataclass
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

    @property
    def top_tokens(self) -> str:
        """The commonest peak tokens for display: ``' sea'×12, ' ocean'×3``."""
        return peaks_text(self.peaks)

    @property
    def description(self) -> str:
        return self.explanation or self.top_tokens

    @property
    def dense(self) -> bool:
        return is_dense(self.density)


@dataclass(frozen=True)
class SearchHit:
    feature: int
    score: float
    peaks: list[tuple[str, int]]
    """(token, count) its top examples peak on, most common first (``FeatureRecord.peaks``)."""
    density: float

    @property
    def top_tokens(self) -> str:
        return peaks_text(self.peaks)


class Firing(NamedTuple):
    """How every feature fires over the indexed tokens, each (n_features,) float64."""

    density: np.ndarray
    mean: np.ndarray
    """Mean activation when firing; NaN where a feature never fired."""
    sampled_median: np.ndarray
    """Median activation of its sampled contexts (each a uniformly drawn context where it fires,
    at that context's peak): its typical strength where it is on; NaN where none was sampled."""


SHOWN_PEAKS = 3
"""Peak tokens in a feature's short description, and the ones a search matches at the peak."""


def peaks_text(peaks: list[tuple[str, int]], shown: int = SHOWN_PEAKS) -> str:
    """``' sea'×12, ' ocean'×3``: the first ``shown`` (token, count) pairs (repr shows spaces)."""
    return ", ".join(f"{token!r}×{count}" for token, count in peaks[:shown])


def _like(text: str) -> str:
    """``text`` as a LIKE pattern that matches it literally (``%`` and ``_`` escaped by ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class FeatureIndex:
    """An index file opened for reading: ``FeatureIndex("index.db").feature(6605)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = store.open_db(self.path)
        self.meta: dict[str, Any] = {
            k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")
        }
        self.n_features = int(self.meta["features"])
        self.histogram_edges = np.asarray(self.meta["histogram_log10_edges"])

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
        row = self.db.execute("SELECT text FROM tokens WHERE id = ?", (token,)).fetchone()
        return row[0] if row else f"<{token}>"

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
        explanation = self.db.execute(
            "SELECT explanation FROM explanations WHERE feature = ? ORDER BY score DESC LIMIT 1",
            (f,),
        ).fetchone()
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
            explanation=explanation[0] if explanation else None,
        )

    def _pairs(self, select: str, feature: int) -> list[tuple[int, float]]:
        rows = self.db.execute(f"{select} WHERE feature = ? ORDER BY rank", (feature,))
        return [(int(a), float(b)) for a, b in rows]

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

    def describe(self, features: list[int]) -> dict[int, str]:
        """A short description of each feature: its explanation if it has one, else the tokens
        its top examples peak on."""
        out: dict[int, str] = {}
        for f in features:
            row = self.db.execute(
                "SELECT explanation FROM explanations WHERE feature = ? ORDER BY score DESC "
                "LIMIT 1",
                (self.check(f),),
            ).fetchone()
            out[f] = row[0] if row else peaks_text(self.peaks(f))
        return out

    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """Features whose peak tokens (the ``SHOWN_PEAKS`` commonest), top-example texts or
        promoted tokens contain ``query`` (case-insensitive), best first: a match at the peak
        counts most, a whole-token match at the peak (' sea', not ' disease') most of all."""
        word = query.strip()
        if not word:
            raise SaescopeError("the search query is empty")
        like = f"%{_like(word)}%"
        at_peak = (
            "SELECT DISTINCT feature, 1 FROM peaks JOIN tokens ON tokens.id = peaks.token "
            f"WHERE rank < {SHOWN_PEAKS} AND "
        )
        weighted = (
            # LIKE without wildcards: a case-insensitive whole-token match, with or without
            # the token's leading space.
            (10.0, at_peak + "(tokens.text LIKE ? ESCAPE '\\' OR tokens.text LIKE ? ESCAPE '\\')",
             (_like(word), _like(f" {word}"))),
            (3.0, at_peak + "tokens.text LIKE ? ESCAPE '\\'", (like,)),
            (1.0, "SELECT feature, count(*) FROM examples WHERE kind = 'top' "
                  "AND text LIKE ? ESCAPE '\\' GROUP BY feature", (like,)),
            (2.0, "SELECT feature, count(*) FROM logits JOIN tokens ON tokens.id = logits.token "
                  "WHERE sign = 1 AND tokens.text LIKE ? ESCAPE '\\' GROUP BY feature", (like,)),
        )  # fmt: skip
        scores: dict[int, float] = {}
        for weight, sql, args in weighted:
            for feature, count in self.db.execute(sql, args):
                scores[feature] = scores.get(feature, 0.0) + weight * count
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        hits = []
        for feature, score in best:
            (density,) = self.db.execute(
                "SELECT density FROM features WHERE feature = ?", (feature,)
            ).fetchone()
            hits.append(SearchHit(feature, score, self.peaks(feature), density))
        return hits

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
