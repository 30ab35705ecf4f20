"""Corpora, their tokenization into fixed-length contexts, and the special-token policy."""

from saescope.data.contexts import ContextConfig, pack_contexts
from saescope.data.corpus import DEFAULT_CORPUS, Corpus, load_corpus
from saescope.data.special import keep_positions

__all__ = [
    "DEFAULT_CORPUS",
    "ContextConfig",
    "Corpus",
    "keep_positions",
    "load_corpus",
    "pack_contexts",
]
