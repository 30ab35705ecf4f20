"""The pieces of a forward pass that saescope runs itself: a decoder layer's output and the head.

transformers >= 5 returns a Tensor from decoder layers; older versions, and submodules such as
attention at any version, return a tuple whose first element is the hidden state. ``hidden_of``
and ``with_hidden`` are the one place that knows, for the hooks and the suffix replay alike.
The head is the model's own final norm, unembedding and (where the family has one) final-logit
soft-cap, as its ``Family`` describes them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from saescope.errors import SaescopeError
from saescope.models.families import find_module, get_module
from saescope.models.model import LanguageModel


def hidden_of(output: Any) -> Tensor:
    """The hidden state (B, T, d) in a layer's or submodule's output, Tensor or tuple."""
    return output if isinstance(output, Tensor) else output[0]


def with_hidden(output: Any, hidden: Tensor) -> Any:
    """``output`` with its hidden state replaced by ``hidden``, in the same form."""
    return hidden if isinstance(output, Tensor) else (hidden, *output[1:])


def final_norm(model: LanguageModel) -> nn.Module:
    """The norm applied to the last layer's output before the unembedding."""
    return find_module(model.hf, model.family.final_norm, "final norm")


def logit_softcap(model: LanguageModel) -> float | None:
    """The final-logit soft-cap of ``model`` (``cap * tanh(logits / cap)``), or None."""
    attribute = model.family.logit_softcap
    if attribute is None:
        return None
    config = model.hf.config.get_text_config()
    if not hasattr(config, attribute):
        raise SaescopeError(
            f"family {model.family.name!r} reads the logit soft-cap from config.{attribute}, "
            f"but {model.name}'s {type(config).__name__} has no such attribute; "
            "fix the family's logit_softcap (None if the model has no soft-cap)"
        )
    cap = getattr(config, attribute)
    return float(cap) if cap else None  # transformers writes None (or 0) for "disabled"


def unembed(model: LanguageModel, resid: Tensor) -> Tensor:
    """Logits (..., vocab), float32, for residual-stream vectors (..., d_model), as the model's
    head computes them: final norm, unembedding, soft-cap."""
    head = get_module(model.hf, model.family.unembed)
    logits = head(final_norm(model)(resid.to(model.dtype)))
    cap = logit_softcap(model)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits.float()
