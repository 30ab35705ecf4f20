"""The one special-token policy: which token positions count as ordinary text.

Every part of saescope that decides "does this position count" (capture, live streaming, the
index, evaluation, neuron search, steering) asks ``keep_positions``. The rule:

- padding (``attention_mask == 0``) is never kept; without a mask every position is real;
- with ``exclude_special`` (the default), the tokenizer's special tokens (BOS, EOS, pad, unk,
  mask, chat markers: ``all_special_ids``) are not kept either. On Gemma their residual norms
  are 15-25x a typical token's, so they would dominate training and statistics, and the SAE
  never saw them.

A model loaded without a tokenizer has only its config's ``bos/eos/pad_token_id`` to go on.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor

# id(source) -> (weak reference to it, its special-token count when read, its ids (S,) int64).
# Tokenizers are neither reliably hashable nor cheap to ask (``all_special_ids`` converts every
# special token each call), so the ids are read once per object and kept while it lives.
_CACHE: dict[int, tuple[weakref.ref[Any], int, Tensor]] = {}


def _read_ids(source: Any) -> list[int]:
    if hasattr(source, "all_special_ids"):
        ids: list[Any] = list(source.all_special_ids)
    else:  # a model config: the ids it names (eos may be a list on chat models)
        ids = [getattr(source, f"{name}_token_id", None) for name in ("bos", "eos", "pad")]
    flat: set[int] = set()
    for i in ids:
        if isinstance(i, list | tuple):
            flat.update(int(j) for j in i)
        elif i is not None:
            flat.add(int(i))
    return sorted(flat)


def _size(source: Any) -> int:
    """Changes when special tokens are added to a tokenizer, which invalidates the cache."""
    try:
        return len(source)
    except TypeError:
        return -1


def _special_ids(source: Any) -> Tensor:
    """(S,) int64 sorted ids of ``source``'s special tokens, ``source`` being a tokenizer or,
    for a model without one, its config. Read once per object (again if tokens are added)."""
    key, size = id(source), _size(source)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is source and hit[1] == size:
        return hit[2]
    ids = torch.tensor(_read_ids(source), dtype=torch.long)
    try:
        ref = weakref.ref(source, lambda _: _CACHE.pop(key, None))
    except TypeError:  # not weak-referenceable: nothing safe to key on, so no caching
        return ids
    _CACHE[key] = (ref, size, ids)
    return ids


def keep_positions(
    input_ids: Tensor,
    tokenizer: Any,
    exclude_special: bool = True,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Bool mask (B, T), on ``input_ids``' device, of the positions that count (module docstring).

    ``tokenizer`` may be a model config when the model has no tokenizer. With
    ``exclude_special=False`` every non-padding position is kept, special tokens included.
    """
    keep = torch.ones_like(input_ids, dtype=torch.bool)  # (B, T)
    if exclude_special:
        ids = _special_ids(tokenizer).to(input_ids.device, input_ids.dtype)
        keep = ~torch.isin(input_ids, ids)
    if attention_mask is not None:
        keep &= attention_mask.to(input_ids.device).bool()
    return keep
