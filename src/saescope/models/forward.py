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


def unembed(model: LanguageModel, resid: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Logits (..., vocab), float32, for residual-stream vectors (..., d_model), as the model's
    head computes them: final norm, unembedding, soft-cap. The head runs in ``dtype`` (default:
    the model's own); ``torch.float32`` on a bf16 model gives logits that are not rounded to
    bf16's 8 significant bits, where tokens a few hundredths apart tie."""
    head = get_module(model.hf, model.family.unembed)
    if dtype is None or dtype == model.dtype:
        logits = head(final_norm(model)(resid.to(model.dtype)))
    else:
        logits = _run_in(head, _run_in(final_norm(model), resid.to(dtype), dtype), dtype)
    cap = logit_softcap(model)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits.float()


def _run_in(module: nn.Module, x: Tensor, dtype: torch.dtype) -> Tensor:
    """``module(x)`` with its floating-point weights cast to ``dtype`` (copies: the module is
    left as it is). A linear head is cast a slice of the vocabulary at a time, so a 256k-token
    float32 copy of a bf16 unembedding is never held whole."""
    if isinstance(module, nn.Linear):
        rows = 16_384
        w, b = module.weight, module.bias
        return torch.cat(
            [
                nn.functional.linear(
                    x,
                    w[i : i + rows].to(dtype),
                    None if b is None else b[i : i + rows].to(dtype),
                )
                for i in range(0, w.shape[0], rows)
            ],
            dim=-1,
        )
    state = {
        name: t.to(dtype) if t.is_floating_point() else t
        for name, t in [*module.named_parameters(), *module.named_buffers()]
    }
    return torch.func.functional_call(module, state, (x,))
