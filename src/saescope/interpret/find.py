"""Search by example: the features that fire specifically on texts showing a concept.

Give a few texts where the concept appears (``"She cooked the pasta in the kitchen"``) and,
optionally, contrast texts where it does not; every feature is scored by how surprising its
firing on the texts is, given how often it usually fires (the index) and how it fires on the
contrast texts::

    rate     q = mean over the texts of min(its largest activation in the text / usual, 1)
    chance   b = mean over the texts of 1 - (1 - max(density, MIN_DENSITY))^tokens   (by chance)
    baseline   = max(b, the same rate q_c over the contrast texts)
    score      = texts * KL(Bernoulli(q) || Bernoulli(baseline))  if q > baseline, else 0  (nats)

"usual" is the feature's mean activation where it fires and "density" its firing rate, both
from the index; so a text where it fires as strongly as usual counts as one, a weak firing as a
fraction. Each text counts once however many of its tokens the feature fires on: firing is
strongly correlated within a context, and counting tokens as independent draws let a feature
that happened to fire on a few neighbouring tokens outrank the one firing on the concept's
token (on the tiny planted model of the tests: first in 5 of 8 random SAEs counting tokens, 8 of
8 counting texts). The score is about the log-probability that this many random texts would
show this much firing: it grows with how many of the texts the feature fires on and with how
rare it is, and is 0 for a feature that fires as much on the contrast texts (or is always on).
One text says little (the rarest feature firing on it wins): give several. A dense feature
(``is_dense``) rarely means the concept even where it fires, so dense features come after all
the others, flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from saescope.data import keep_positions
from saescope.errors import SaescopeError
from saescope.interpret.query import FeatureIndex, is_dense
from saescope.interpret.sources import FeatureSource
from saescope.models import LanguageModel, run_with_cache
from saescope.sae import SAE, sae_site

SHOWN_TOKENS = 3
"""Tokens of the texts named per hit (where the feature is largest)."""


@dataclass(frozen=True)
class ExampleHit:
    feature: int
    score: float
    """Surprise of its firing on the texts, in nats (module docstring); larger is better."""
    rate: float
    """q: the share of the texts it fires on, each weighted by its activation / usual (<= 1)."""
    density: float
    """Its firing rate in the index (``FeatureRecord.density``)."""
    contrast: float | None
    """q_c: the same rate over the contrast texts; None without contrast texts."""
    texts: int
    """How many of the texts it fires on."""
    tokens: list[tuple[str, float]]
    """(token, activation) where it is largest in the texts, largest first."""

    @property
    def dense(self) -> bool:
        return is_dense(self.density)


@dataclass(frozen=True)
class _Encoded:
    acts: Tensor  # (n, F) feature activations on the kept tokens of all texts
    tokens: list[str]  # (n,) their text
    text: Tensor  # (n,) which text each token is from


@torch.inference_mode()
def search_by_example(
    model: LanguageModel,
    sae: SAE | FeatureSource,
    index: FeatureIndex,
    texts: list[str],
    contrast: list[str] | None = None,
    limit: int = 20,
) -> list[ExampleHit]:
    """The ``limit`` features that fire most specifically on ``texts`` (module docstring): run
    each text (and each contrast text) through ``model`` with ``sae`` at its site, and score
    every feature against its statistics in ``index``, which must be the index of this SAE.
    Non-dense features first by score, then dense ones; features scoring 0 are left out."""
    source = sae if isinstance(sae, FeatureSource) else _source(sae)
    _check_index(model, source, index)
    if not texts:
        raise SaescopeError("give at least one text that shows the concept")
    density, usual = _usual(index)  # (F,), (F,)
    on = _encode(model, source, texts, "text")
    q = _text_rate(on, usual)  # (F,)
    baseline = _chance(on, density)  # (F,)
    q_c = None
    if contrast:
        q_c = _text_rate(_encode(model, source, contrast, "contrast text"), usual)
        baseline = torch.maximum(baseline, q_c)
    score = torch.where(q > baseline, len(texts) * _kl(q, baseline), 0.0)  # (F,)
    dense = torch.tensor([is_dense(float(d)) for d in density])
    # Dense features after all the others, each group by score.
    order = sorted(
        (int(f) for f in torch.nonzero(score > 0).flatten()),
        key=lambda f: (bool(dense[f]), -float(score[f]), f),
    )[:limit]
    fired = on.acts > 0  # (n, F)
    hits = []
    for f in order:
        col = on.acts[:, f]
        top = col.topk(min(SHOWN_TOKENS, int((col > 0).sum()))).indices.tolist()
        hits.append(
            ExampleHit(
                feature=f,
                score=float(score[f]),
                rate=float(q[f]),
                density=float(density[f]),
                contrast=None if q_c is None else float(q_c[f]),
                texts=len(set(on.text[fired[:, f]].tolist())),
                tokens=[(on.tokens[i], float(col[i])) for i in top],
            )
        )
    return hits


def _source(sae: SAE) -> FeatureSource:
    return FeatureSource(
        kind="sae", site=sae_site(sae), n_features=sae.cfg.d_sae, d_in=sae.cfg.d_in, sae=sae.eval()
    )


def _check_index(model: LanguageModel, source: FeatureSource, index: FeatureIndex) -> None:
    """Refuse an index of another SAE, site or model: its statistics would score the wrong
    features and nothing would look wrong."""
    meta = index.meta
    identity = meta["source"].get("identity")
    if source.identity and identity and source.identity != identity:
        raise SaescopeError(
            f"{index.path} indexes the SAE {identity}, not the one given ({source.identity} at "
            f"{source.path or 'in memory'}); pass the SAE the index was built from"
        )
    if index.n_features != source.n_features or meta["site"] != source.site:
        raise SaescopeError(
            f"{index.path} has {index.n_features:,} features at {meta['site']}, the SAE "
            f"{source.n_features:,} at {source.site}; pass the SAE the index was built from"
        )
    if meta.get("model") and meta["model"] != model.name:
        raise SaescopeError(
            f"{index.path} was built on the model {meta['model']!r}, this one is {model.name!r}; "
            f"load {meta['model']!r} (--model)"
        )


def _usual(index: FeatureIndex) -> tuple[Tensor, Tensor]:
    """(F,) density and (F,) mean activation where firing (NaN for a feature that never fired
    in the index) of every feature. A never-seen feature's rate is half a firing in the
    indexed tokens: small, not 0, so its score stays finite."""
    rows = index.db.execute(
        "SELECT fires, mean_activation FROM features ORDER BY feature"
    ).fetchall()
    tokens = int(index.meta["tokens"])
    fires = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    density = torch.where(fires > 0, fires, 0.5) / tokens
    usual = torch.tensor([float("nan") if r[1] is None else r[1] for r in rows])
    return density.float(), usual


def _encode(model: LanguageModel, source: FeatureSource, texts: list[str], what: str) -> _Encoded:
    acts, tokens, which = [], [], []
    for i, text in enumerate(texts):
        ids = model.tokenizer(text, return_tensors="pt")["input_ids"]  # (1, T)
        keep = keep_positions(ids, model.tokenizer)[0]  # (T,)
        if not text.strip() or not bool(keep.any()):
            raise SaescopeError(
                f"{what} {i + 1} ({text!r}) has no tokens once special ones are left out"
            )
        x = run_with_cache(model, ids, [source.site])[source.site][0][keep].float()  # (t, d)
        acts.append(source.encode(x).to_dense().float().cpu())  # (t, F)
        tokens += [model.tokenizer.decode([int(t)]) for t in ids[0][keep]]
        which.append(torch.full((int(keep.sum()),), i))
    return _Encoded(torch.cat(acts), tokens, torch.cat(which))


def _text_rate(enc: _Encoded, usual: Tensor) -> Tensor:
    """(F,) mean over texts of min(largest activation in the text / usual, 1)."""
    texts = int(enc.text.max()) + 1
    where = enc.text[:, None].expand_as(enc.acts)  # (n, F)
    peak = torch.zeros(texts, enc.acts.shape[1]).scatter_reduce_(0, where, enc.acts, "amax")
    return _rate(peak, usual)


MIN_DENSITY = 1e-3
"""The density a feature's chance of firing assumes at least. The index's estimate for a feature
that fired a handful of times in 262k tokens is mostly noise, and taken at face value (~0) any
firing on one text out-scores a feature firing on every text (on the quickstart SAE a feature of
density 0.000% firing weakly on ' before' in 1 of 3 cooking texts came first)."""


def _chance(enc: _Encoded, density: Tensor) -> Tensor:
    """(F,) the mean over texts of the chance that a feature of this density (at least
    ``MIN_DENSITY``) fires somewhere in a text of that many tokens, were tokens independent."""
    lengths = torch.bincount(enc.text).double()  # (texts,)
    floored = density.double().clamp(min=MIN_DENSITY)
    miss = (1 - floored)[None, :] ** lengths[:, None]  # (texts, F)
    return (1 - miss).mean(0).float()


def _rate(acts: Tensor, usual: Tensor) -> Tensor:
    """(F,) mean over tokens of min(activation / usual, 1); a feature never seen in the index
    counts each firing as one."""
    scale = torch.where(usual.isnan(), acts.amax(0).clamp(min=1e-12), usual)  # (F,)
    return (acts / scale).clamp(max=1.0).mean(0)


def _kl(q: Tensor, b: Tensor) -> Tensor:
    """KL(Bernoulli(q) || Bernoulli(b)) in nats, elementwise; 0 log 0 = 0."""
    q, b = q.double(), b.double().clamp(1e-12, 1 - 1e-12)
    return (torch.xlogy(q, q / b) + torch.xlogy(1 - q, (1 - q) / (1 - b))).float()
