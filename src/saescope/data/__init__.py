"""Corpora and their tokenization into fixed-length contexts."""

from saescope.data.contexts import ContextConfig, keep_mask, pack_contexts, special_ids
from saescope.data.corpus import DEFAULT_CORPUS, Corpus, load_corpus

__all__ = [
    "DEFAULT_CORPUS",
    "ContextConfig",
    "Corpus",
    "keep_mask",
    "load_corpus",
    "pack_contexts",
    "special_ids",
]
