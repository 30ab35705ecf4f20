"""Turn a finished pass (a ``FeatureCollector``) and the weights into the SQLite index."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from saescope import __version__
from saescope.interpret import store
from saescope.interpret.attribution import logit_attribution, nearest_neighbours, top_neurons_of
from saescope.interpret.collect import (
    HIST_BINS,
    HIST_LOG10_RANGE,
    PAD_TOKEN,
    UNKNOWN_TOKEN,
    FeatureCollector,
    Slots,
)
from saescope.interpret.sources import FeatureSource
from saescope.models import LanguageModel, Site

log = logging.getLogger(__name__)

LOGIT_K = 10
NEIGHBOURS_K = 10
NEURONS_K = 10
QUANTILES = 4


class TokenText:
    """Decoded text of token ids, each decoded once."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {PAD_TOKEN: "", UNKNOWN_TOKEN: "<special>"}

    def __call__(self, token: int) -> str:
        text = self.cache.get(token)
        if text is None:
            text = self.cache[token] = self.tokenizer.decode([token])
        return text

    def joiner(self, *windows: Tensor) -> Callable[[np.ndarray], str]:
        """A fast ``ids -> text`` for windows drawn from ``windows``: every id is decoded up
        front into one lookup array."""
        ids = torch.cat([w.flatten() for w in windows]).unique().tolist()
        table = np.empty(max(ids, default=0) + 3, dtype=object)  # shifted by 2: PAD -> 0
        for token in ids:
            table[token + 2] = self(token)
        return lambda window: "".join(table[window + 2])


def write_index(
    out: Path,
    collector: FeatureCollector,
    source: FeatureSource,
    model: LanguageModel,
    meta: dict[str, Any],
) -> Path:
    """Write everything to ``out`` via a temporary file renamed at the end (atomic)."""
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    text = TokenText(model.tokenizer)
    db = store.create(tmp)
    try:
        with db:
            store.write_meta(db, _meta(meta, collector))
            _write_examples(db, collector, text)
            _write_features(db, collector)
            neighbours = _write_weights(db, source, model)
            _write_heldout(db, collector, text, neighbours)
            _write_tokens(db, text)
        db.execute("VACUUM")
    finally:
        db.close()
    tmp.replace(out)
    return out


def _meta(meta: dict[str, Any], collector: FeatureCollector) -> dict[str, Any]:
    lo, hi = HIST_LOG10_RANGE
    return meta | {
        "features": collector.features,
        "tokens": collector.tokens_seen,
        "histogram_log10_edges": np.linspace(lo, hi, HIST_BINS + 1).tolist(),
        "encoding": "token_ids int32 little-endian, activations float16 little-endian",
        "saescope_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _rows(
    slots: Slots,
    kind: str,
    focus: int,
    join: Callable[[np.ndarray], str],
    valid: Tensor | None = None,
) -> Iterator[tuple]:
    """Example rows of the filled slots (those of ``valid`` (F, S) if given)."""
    filled = slots.score > float("-inf")  # (F, S)
    valid = filled if valid is None else valid & filled
    tokens, acts = slots.tokens.numpy(), slots.acts.numpy()
    value, context, position = slots.value, slots.context, slots.position
    # Slots are unordered: rank by score (top) or by activation (the sample, then cut into
    # quantile groups); empty slots sort last.
    key = slots.score if kind == "top" else slots.value
    rank = torch.where(valid, key, float("-inf")).argsort(dim=1, descending=True).argsort(dim=1)
    quantile = None
    if kind != "top":
        count = valid.sum(1, keepdim=True).clamp(min=1)
        quantile = ((count - 1 - rank) * QUANTILES // count).clamp(min=0, max=QUANTILES - 1)
    for f, s in torch.nonzero(valid).tolist():
        ids = tokens[f, s]
        yield (
            f, kind, int(rank[f, s]), float(value[f, s]),
            None if quantile is None else int(quantile[f, s]),
            int(context[f, s]), int(position[f, s]), focus,
            store.int32_blob(ids), store.act_blob(acts[f, s]),
            join(ids),
        )  # fmt: skip


def _write_examples(db: Any, collector: FeatureCollector, text: TokenText) -> None:
    focus = collector.cfg.before  # every window has its peak this many slots in
    join = text.joiner(collector.top.tokens, collector.sample.tokens, collector.pool_tokens)
    sql = "INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    db.executemany(sql, _rows(collector.top, "top", focus, join))
    db.executemany(sql, _rows(collector.sample, "sample", focus, join))
    zeros = []
    for f in range(collector.features):
        for rank, slot in enumerate(collector.zero_examples(f)):
            ids = collector.pool_tokens[slot].numpy()
            zeros.append(
                (f, "zero", rank, 0.0, None, int(collector.pool_context[slot]), -1,
                 focus, store.int32_blob(ids),
                 store.act_blob(np.zeros(len(ids))), join(ids))
            )  # fmt: skip
    db.executemany(sql, zeros)


def _write_features(db: Any, collector: FeatureCollector) -> None:
    tokens = max(collector.tokens_seen, 1)
    rows: list[tuple] = []
    peaks: list[tuple[int, int, int, int]] = []
    for f, counted in enumerate(_peak_counts(collector)):
        fires = int(collector.fires[f])
        firing = sum(count for _, count in counted)
        rows.append(
            (
                f,
                fires,
                fires / tokens,
                float(collector.act_sum[f]) / fires if fires else None,
                float(collector.act_max[f]),
                store.int32_blob(collector.hist[f].numpy()),
                counted[0][1] / firing if counted else 0.0,
            )
        )
        peaks.extend((f, rank, token, count) for rank, (token, count) in enumerate(counted))
    db.executemany("INSERT INTO features VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT INTO peaks VALUES (?, ?, ?, ?)", peaks)


def _peak_counts(collector: FeatureCollector) -> Iterator[list[tuple[int, int]]]:
    """Per feature, (token id, how many top examples peak on it), commonest first; among equal
    counts the token of the larger top example first (slot order is arbitrary, so never that)."""
    peak = collector.top.tokens[:, :, collector.cfg.before].tolist()  # (F, top) token at peak
    score = collector.top.score.tolist()  # (F, top) -inf marks an empty slot
    for tokens, scores in zip(peak, score, strict=True):
        count: dict[int, int] = {}
        best: dict[int, float] = {}
        for token, value in zip(tokens, scores, strict=True):
            if value > float("-inf"):
                count[token] = count.get(token, 0) + 1
                best[token] = max(best.get(token, value), value)
        yield sorted(count.items(), key=lambda tc: (-tc[1], -best[tc[0]], tc[0]))


def _write_heldout(
    db: Any, collector: FeatureCollector, text: TokenText, neighbours: Tensor
) -> None:
    """The held-out set scoring reads: ``heldout`` firing contexts (by quantile) that are none
    of the feature's top or sampled ones, then ``near`` and ``heldout_zero`` silent windows of
    the held-out pool: near misses are windows where one of its ``neighbours`` (F, K) fires,
    the nearest neighbour's first, up to half of ``cfg.heldout_zeros``; the rest at random."""
    cfg = collector.cfg
    focus = cfg.before
    pool = collector.held_pool
    join = text.joiner(collector.heldout.tokens, pool.tokens)
    sql = "INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    if cfg.heldout:
        held = collector.heldout
        shown = torch.cat([collector.top.context, collector.sample.context], dim=1)  # (F, S)
        unseen = ~(held.context[:, :, None] == shown[:, None, :]).any(-1)  # (F, H)
        db.executemany(sql, _rows(held, "heldout", focus, join, unseen))
    rows = []
    fired = collector.held_fired  # (P, F)
    filled = pool.score[0] > float("-inf")  # (P,)
    K = neighbours.shape[1]
    for f in range(collector.features):
        silent = filled & ~fired[:, f]  # (P,)
        by_neighbour = fired[:, neighbours[f]]  # (P, K): which neighbours fire in each window
        # the rank of the nearest neighbour firing there, K where none does
        nearest = torch.where(by_neighbour.any(1), by_neighbour.float().argmax(1), K)
        near = torch.nonzero(silent & (nearest < K)).flatten()
        near = near[nearest[near].argsort(stable=True)][: cfg.heldout_zeros // 2]
        rest = torch.nonzero(silent & (nearest == K)).flatten()[: cfg.heldout_zeros - len(near)]
        for kind, slots in (("near", near.tolist()), ("heldout_zero", rest.tolist())):
            for rank, s in enumerate(slots):
                ids = pool.tokens[0, s].numpy()
                rows.append(
                    (f, kind, rank, 0.0, None, int(pool.context[0, s]), int(pool.position[0, s]),
                     focus, store.int32_blob(ids), store.act_blob(np.zeros(len(ids))), join(ids))
                )  # fmt: skip
    db.executemany(sql, rows)


def _write_weights(db: Any, source: FeatureSource, model: LanguageModel) -> Tensor:
    """Logit attribution, neighbours (returned, (F, K) feature ids) and neurons."""
    log.info("logit attribution and neighbours of %s features", f"{source.n_features:,}")
    directions = source.write_directions(model)  # (F, d_model)
    pv, pi, sv, si = logit_attribution(model, directions, LOGIT_K)
    logits = [
        (f, sign, r, int(ids[f, r]), float(vals[f, r]))
        for sign, vals, ids in ((1, pv, pi), (-1, sv, si))
        for f in range(len(ids))
        for r in range(ids.shape[1])
    ]
    db.executemany("INSERT INTO logits VALUES (?, ?, ?, ?, ?)", logits)
    rows = source.decoder_rows() if source.sae is not None else directions
    cos, ids = nearest_neighbours(rows, NEIGHBOURS_K)
    db.executemany(
        "INSERT INTO neighbours VALUES (?, ?, ?, ?)",
        [(f, r, int(ids[f, r]), float(cos[f, r])) for f in range(len(ids)) for r in range(ids.shape[1])],
    )  # fmt: skip
    if source.sae is not None and Site.parse(source.site_out).kind == "mlp_act":
        w, n = top_neurons_of(source.decoder_rows(), NEURONS_K)
        db.executemany(
            "INSERT INTO neurons VALUES (?, ?, ?, ?)",
            [(f, r, int(n[f, r]), float(w[f, r])) for f in range(len(n)) for r in range(n.shape[1])],
        )  # fmt: skip
    return torch.as_tensor(ids)


def _write_tokens(db: Any, text: TokenText) -> None:
    for (token,) in db.execute("SELECT DISTINCT token FROM logits").fetchall():
        text(int(token))
    db.executemany(
        "INSERT INTO tokens VALUES (?, ?)",
        [(t, s) for t, s in text.cache.items() if t != PAD_TOKEN],
    )
