"""saescope: sparse autoencoders on any Hugging Face causal LM.

The public API is imported lazily so that ``import saescope`` and ``saescope --help`` stay fast.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("saescope")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_API = {
    "load_model": "saescope.models",
    "LanguageModel": "saescope.models",
    "Site": "saescope.models",
    "load_corpus": "saescope.data",
    "ContextConfig": "saescope.data",
    "capture": "saescope.activations",
    "open_activations": "saescope.activations",
    "stream_activations": "saescope.activations",
    "SaescopeError": "saescope.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'saescope' has no attribute {name!r}")
