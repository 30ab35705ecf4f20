"""Live activations: the cache's batch iterator fed straight from the model, with no disk."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch import Tensor

from saescope.activations.extract import check_context_size, site_rows
from saescope.activations.outliers import OutlierPolicy, OutlierRule
from saescope.data import ContextConfig, Corpus, load_corpus, pack_contexts
from saescope.errors import SaescopeError
from saescope.models import LanguageModel, Site


def stream_activations(
    model: LanguageModel,
    site: str | Site,
    batch_size: int,
    corpus: Corpus | None = None,
    context: ContextConfig = ContextConfig(),
    *,
    contexts_per_forward: int = 16,
    buffer_rows: int = 65_536,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    outliers: OutlierPolicy | OutlierRule | None = None,
) -> Iterator[Tensor]:
    """Yield (batch_size, d) activation batches at ``site`` over one pass of the corpus.

    Tokens of one context are strongly correlated, so rows go through a shuffle buffer: it is
    filled to ``buffer_rows``, shuffled, and its first half emitted, the other half staying to mix
    with the next fill. Memory is bounded by the buffer; special tokens are excluded as in capture.
    ``outliers`` (None: rows as computed) is applied to the rows before they are buffered, so
    batches stay full; a policy's median norm is measured on the first forward's rows.
    """
    if buffer_rows < 2 * batch_size:
        raise SaescopeError(f"buffer_rows ({buffer_rows}) must be at least 2 x batch_size")
    parsed = model.site(site)
    check_context_size(model, context.context_size)  # on the first next(), before any forward
    corpus = corpus if corpus is not None else load_corpus()
    contexts = pack_contexts(corpus, model.tokenizer, context)
    generator = torch.Generator().manual_seed(seed)
    buffer = torch.empty(0, model.site_dim(parsed), dtype=dtype)
    while True:
        batch = list(itertools.islice(contexts, contexts_per_forward))
        if batch:
            input_ids = torch.stack(batch)  # (B, T)
            rows = site_rows(model, input_ids, [parsed], context.exclude_special, dtype, "cpu")
            got = rows.acts[parsed.name]  # (N, d)
            if isinstance(outliers, OutlierPolicy):
                outliers = outliers.rule_from(got)
            buffer = torch.cat([buffer, outliers.apply(got) if outliers else got])
            if len(buffer) < buffer_rows:
                continue
        buffer = buffer[torch.randperm(len(buffer), generator=generator)]
        emit = len(buffer) if not batch else len(buffer) // 2 // batch_size * batch_size
        yield from buffer[:emit].split(batch_size)
        buffer = buffer[emit:]
        if not batch:
            return
