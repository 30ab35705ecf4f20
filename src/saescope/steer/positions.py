"""Which token positions an intervention edits, defined the same with or without the KV cache.

With the cache, ``generate`` feeds the prompt once and then one new token per forward pass, so a
site function sees (B, T_prompt, d) and then (B, 1, d) tensors: "position 3" cannot be read off
the tensor's own index. A ``PositionTracker`` hooks the model's top-level forward and, for every
call, works out each current token's index in its own sequence from a (B, past + T) mask of real
tokens:

    pos = cumsum(mask, -1) - 1   over (B, past + T), then the last T columns   (B, T)

so index 0 is each row's first real token (BOS on models that use one), left padding included,
with the cache on or off. Tokens at index >= the row's prompt length are "generated".

During ``generate_with`` the mask is not read from the call's keyword arguments (transformers
renames them: 5.24 calls ``past_key_values`` ``cache`` and passes no attention mask for
unpadded input). It is counted: each forward pass of ``generate`` adds one token to every
sequence, so forward k (from 0) covers T_prompt + k tokens, of which it feeds T; the mask is
the left-padded prompt's followed by k ones. Any KV cache in the call, found by what it is (an
object with ``get_seq_length``) rather than by its name, must hold exactly the other
T_prompt + k - T tokens; if it does not (or a forward without a cache does not feed the whole
sequence) the tracker raises instead of editing the wrong tokens. Outside generation (a plain
``model.hf(...)``) the caller's ``attention_mask`` and cache say where the tokens are.

Policy: special tokens (BOS, EOS, padding, chat markers; ``data.keep_positions`` says which) are
not edited unless asked. The SAE never saw them in training (saescope excludes them, as
``evaluate.splice`` does), and on Gemma the BOS residual is 15-25x a normal token's norm: an edit
there is an edit to the attention sink that every later token reads, not to the concept.
Golden-Gate-style clamping edits every other token.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from saescope.data import keep_positions
from saescope.errors import SaescopeError
from saescope.models import LanguageModel


@dataclass(frozen=True)
class Positions:
    """Token positions to edit. Indices count from each sequence's first real token (BOS = 0)."""

    indices: tuple[int, ...] | None = None
    """Only these token indices (non-negative); ``None``: no restriction."""
    prompt: bool = True
    """Edit prompt tokens (every token of a forward pass outside ``generate_with``)."""
    generated: bool = True
    """Edit tokens produced by ``generate_with``."""
    special: bool = False
    """Also edit BOS / EOS / other special tokens (padding is never edited)."""

    def __post_init__(self) -> None:
        if self.indices is not None and any(i < 0 for i in self.indices):
            raise SaescopeError(
                f"positions count from the first token (BOS = 0) and must be >= 0, got "
                f"{list(self.indices)}; to edit only generated tokens use Positions(prompt=False)"
            )
        if not (self.prompt or self.generated):
            raise SaescopeError("Positions(prompt=False, generated=False) selects nothing")


ALL = Positions()
"""Every ordinary (non-special) token, prompt and generated."""
GENERATED = Positions(prompt=False)
"""Only tokens produced during generation."""


@dataclass
class _Step:
    """What the tracker knows about the forward pass in progress."""

    pos: Tensor
    """(B, T) index of each current token in its own sequence; -1 at left padding."""
    real: Tensor
    """(B, T) not padding."""
    special: Tensor
    """(B, T) a special token."""
    generated: Tensor
    """(B, T) at or past the row's prompt length."""


class PositionTracker:
    """Follows token positions across forward passes; site functions ask it for masks."""

    def __init__(self, model: LanguageModel) -> None:
        self.vocabulary = model.tokenizer if model.tokenizer is not None else model.hf.config
        """What ``keep_positions`` reads the special tokens from: the tokenizer or, for a
        model without one, its config's bos/eos/pad ids."""
        self.prompt_lengths: Tensor | None = None
        """(B,) real tokens per left-padded prompt row, set by ``generate_with`` for one
        ``generate`` call; None: every token is prompt."""
        self._step: _Step | None = None
        self._prompt_width: int | None = None
        """Tokens in the (left-padded) prompt: the width of a generation's first forward."""
        self._forwards = 0
        """Forward passes of the generation so far."""

    def mask(self, where: Positions) -> Tensor:
        """(B, T) bool: the current forward's tokens that ``where`` selects."""
        step = self._step
        if step is None:
            raise SaescopeError(
                "an intervention hook ran outside a forward pass of the whole model; call "
                "model.hf(...) or generate, not a submodule, inside `intervene`"
            )
        keep = step.real if where.special else step.real & ~step.special
        if where.indices is not None:
            keep = keep & torch.isin(step.pos, torch.tensor(where.indices, device=step.pos.device))
        if not where.prompt:
            keep = keep & step.generated
        if not where.generated:
            keep = keep & ~step.generated
        return keep

    @property
    def pos(self) -> Tensor:
        """(B, T) token index of each current position (valid during a forward pass)."""
        if self._step is None:
            raise SaescopeError("no forward pass in progress")
        return self._step.pos

    def _begin(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        first = ids if ids is not None else kwargs.get("inputs_embeds")
        if not isinstance(first, Tensor):
            raise SaescopeError(
                "an intervention needs the model called with input_ids or inputs_embeds; "
                f"found neither among {sorted(kwargs)}"
            )
        B, T = first.shape[:2]
        device = first.device
        cached = _cache_length(args, kwargs)  # None: no cache object in this call
        if self.prompt_lengths is None:
            mask = _call_mask(kwargs, B, T, cached or 0, device)
        else:
            mask = self._generation_mask(B, T, cached, device)
        pos = (mask.cumsum(-1) - 1)[:, -T:]  # (B, T)
        real = mask[:, -T:].bool()
        if ids is not None:
            special = ~keep_positions(ids, self.vocabulary)  # padding is `real`'s business
        else:  # embeddings only: token identities unknown, nothing counts as special
            special = torch.zeros(B, T, dtype=torch.bool, device=device)
        if self.prompt_lengths is None:
            generated = torch.zeros(B, T, dtype=torch.bool, device=device)
        else:
            generated = pos >= self.prompt_lengths.to(device).unsqueeze(1)
        self._step = _Step(pos, real, special, generated)

    def _generation_mask(self, B: int, T: int, cached: int | None, device: Any) -> Tensor:
        """(B, total) real-token mask of forward number ``self._forwards`` of one generation."""
        assert self.prompt_lengths is not None
        if self.prompt_lengths.shape[0] != B:
            raise SaescopeError(
                f"generation was set up for {self.prompt_lengths.shape[0]} rows, the forward "
                f"pass has {B}; beam search and other batch reshaping are not supported"
            )
        if self._prompt_width is None:  # the first forward of a generation feeds the prompt
            self._prompt_width = T
        width, k = self._prompt_width, self._forwards
        total = width + k
        past = total - T
        if (cached is None and past != 0) or (cached is not None and cached != past):
            raise SaescopeError(
                f"lost track of token positions during generation: forward pass {k} after a "
                f"{width}-token prompt feeds {T} tokens with "
                f"{'no KV cache' if cached is None else f'{cached} tokens in the KV cache'}, "
                f"expected {total} tokens in all; this transformers version generates in a way "
                "saescope does not follow (speculative decoding? several generate calls in one "
                "intervene block?): use Positions() without indices, or report it"
            )
        self._forwards += 1
        lengths = self.prompt_lengths.to(device).unsqueeze(1)  # (B, 1)
        prompt = torch.arange(width, device=device) >= width - lengths  # (B, width) left-padded
        new = torch.ones(B, k, dtype=torch.bool, device=device)
        return torch.cat([prompt, new], dim=1).long()  # (B, total)

    def _end(self, *_: Any) -> None:
        self._step = None


@contextmanager
def track_positions(model: LanguageModel) -> Iterator[PositionTracker]:
    """Attach a ``PositionTracker`` to ``model.hf`` for the duration of the block."""
    tracker = PositionTracker(model)
    handles = [
        model.hf.register_forward_pre_hook(tracker._begin, with_kwargs=True),
        # always_call: a forward cut short by an exception must not leave a stale step behind
        model.hf.register_forward_hook(tracker._end, always_call=True),
    ]
    try:
        yield tracker
    finally:
        for handle in handles:
            handle.remove()


def _cache_length(args: tuple, kwargs: dict) -> int | None:
    """Tokens already in the call's KV cache, found by type, whatever the keyword is called."""
    for value in (*args, *kwargs.values()):
        if not isinstance(value, Tensor) and callable(getattr(value, "get_seq_length", None)):
            return int(value.get_seq_length())
    return None


def _call_mask(kwargs: dict, B: int, T: int, past: int, device: Any) -> Tensor:
    """(B, past + T) real-token mask of a forward pass outside generation."""
    mask = kwargs.get("attention_mask")
    if isinstance(mask, Tensor) and mask.dim() == 2:
        return mask.to(device).long()
    return torch.ones(B, past + T, dtype=torch.long, device=device)
