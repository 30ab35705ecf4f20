"""Whole-context batches for the index, from an activation cache or a live model.

Each producer yields ``(batch, cursor)``; ``cursor`` is where to start again to continue right
after that batch (rows for a cache, contexts for a live model), which is what a resumed index
build passes back as ``start``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

from saescope.activations import ActivationCache
from saescope.activations.extract import check_context_size, site_rows
from saescope.activations.shards import acts_key
from saescope.data import ContextConfig, Corpus, pack_contexts
from saescope.interpret.collect import UNKNOWN_TOKEN, Batch
from saescope.models import LanguageModel


def cache_batches(
    cache: ActivationCache, site: str, context_size: int, rows: int = 4096, start: int = 0
) -> Iterator[tuple[Batch, int]]:
    """Batches of about ``rows`` rows of whole contexts, in cache order, from row ``start``."""
    key = acts_key(cache.site(site))
    offset = 0
    for i, info in enumerate(cache.manifest.shards):
        if offset + info.rows <= start:
            offset += info.rows
            continue
        shard = cache.load_shard(i)
        context = shard["context"].long()
        # Shards hold whole contexts in order: cut at context boundaries only.
        bounds = np.flatnonzero(np.diff(context.numpy())) + 1
        cuts = [0, *bounds.tolist(), len(context)]
        lo = start - offset if start > offset else 0
        while lo < len(context):
            hi = next((c for c in cuts if c >= lo + rows), len(context))
            yield _cache_batch(shard, key, lo, hi, context_size), offset + hi
            lo = hi
        offset += info.rows


def _cache_batch(
    shard: dict[str, torch.Tensor], key: str, lo: int, hi: int, context_size: int
) -> Batch:
    context = shard["context"][lo:hi].long()
    contexts, local = torch.unique_consecutive(context, return_inverse=True)
    position = shard["position"][lo:hi].long()
    tokens = torch.full((len(contexts), context_size), UNKNOWN_TOKEN, dtype=torch.long)
    tokens[local, position] = shard["tokens"][lo:hi].long()
    return Batch(tokens, contexts, shard[key][lo:hi], local, position)


def live_batches(
    model: LanguageModel,
    site: str,
    corpus: Corpus,
    context: ContextConfig,
    contexts_per_batch: int = 16,
    start: int = 0,
) -> Iterator[tuple[Batch, int]]:
    """Batches of ``contexts_per_batch`` packed contexts run through the model up to ``site``;
    positions ``keep_positions`` drops (BOS and other special tokens unless the context config
    keeps them) are left out of the rows, kept in the tokens."""
    name = model.site(site).name
    check_context_size(model, context.context_size)
    stream = itertools.islice(pack_contexts(corpus, model.tokenizer, context), start, None)
    done = start
    while batch := list(itertools.islice(stream, contexts_per_batch)):
        ids = torch.stack(batch)  # (B, T)
        rows = site_rows(model, ids, [name], context.exclude_special)
        contexts = torch.arange(done, done + len(batch))
        done += len(batch)
        yield Batch(ids, contexts, rows.acts[name], rows.context, rows.position), done
