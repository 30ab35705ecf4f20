"""Tokenizing a corpus into fixed-length contexts (which positions count: ``data.special``).

Documents are shuffled with a seed, tokenized without special tokens, and concatenated with BOS
between them: ``BOS d1 BOS d2 BOS d3 ...``. The stream is cut into contexts of ``context_size``
tokens, each beginning with BOS (a context that would start mid-document gets one prepended), so
the model always sees the attention sink it was trained with.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from saescope.data.corpus import Corpus
from saescope.errors import SaescopeError

_TOKENIZE_BATCH = 256


@dataclass(frozen=True)
class ContextConfig:
    """How a corpus becomes model inputs, and which positions are kept."""

    context_size: int = 128
    """Tokens per context, BOS included."""
    prepend_bos: bool = True
    """Start every context with BOS (and separate documents with it)."""
    seed: int | None = 0
    """Shuffle documents with this seed before packing; ``None`` keeps file order."""
    exclude_special: bool = True
    """Drop BOS/EOS/pad/other special-token positions from captured activations: on Gemma their
    norms are 15-25x a typical token's and they would dominate training and statistics."""

    def __post_init__(self) -> None:
        if self.context_size < 2:
            raise SaescopeError(f"context_size must be >= 2, got {self.context_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def separator_id(tokenizer: Any) -> int | None:
    """BOS if the tokenizer has one, else EOS (GPT-2 and Pythia use it as both), else None."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return None


def pack_contexts(corpus: Corpus, tokenizer: Any, config: ContextConfig) -> Iterator[Tensor]:
    """Yield contexts (``context_size`` int64 token ids each) in a deterministic order.

    Only whole contexts are yielded; the tail of the corpus shorter than one context is dropped.
    Tokenization is lazy, so asking for the first N contexts costs only those.
    """
    size = config.context_size
    bos = separator_id(tokenizer) if config.prepend_bos else None
    order = list(range(len(corpus)))
    if config.seed is not None:
        random.Random(config.seed).shuffle(order)
    stream: list[int] = []
    for start in range(0, len(order), _TOKENIZE_BATCH):
        texts = [corpus.documents[i] for i in order[start : start + _TOKENIZE_BATCH]]
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            stream.extend(ids if bos is None else [bos, *ids])
        cut = 0
        while len(stream) - cut >= size:
            if bos is None or stream[cut] == bos:
                context, cut = stream[cut : cut + size], cut + size
            else:
                context, cut = [bos, *stream[cut : cut + size - 1]], cut + size - 1
            yield torch.tensor(context, dtype=torch.long)
        del stream[:cut]
