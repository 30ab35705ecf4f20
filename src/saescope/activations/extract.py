"""The one row extractor: a batch of contexts -> the activation rows of the positions that count.

Capture, the live stream, the index's live batches, evaluation's live rows and steering vectors
all need the same thing: run the model on (B, T) token ids up to the deepest site, keep the
positions ``data.keep_positions`` keeps, and flatten them to (N, d) rows in (context, position)
order. ``site_rows`` is that, once, with the context length checked against the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from saescope.data import keep_positions
from saescope.errors import SaescopeError
from saescope.models import LanguageModel, Site, run_with_cache


class Rows(NamedTuple):
    """The kept positions of a batch, row-aligned across fields (N rows in all)."""

    acts: dict[str, Tensor]
    """Site name -> (N, d) activations."""
    context: Tensor
    """(N,) int64 index of each row's context within the batch."""
    position: Tensor
    """(N,) int64 position of each row within its context."""
    tokens: Tensor
    """(N,) int64 token id at each row."""
    keep: Tensor
    """(B, T) bool mask the rows were taken at (on the token ids' device)."""


def check_context_size(model: LanguageModel, size: int) -> None:
    """Refuse contexts longer than the model's position embeddings cover."""
    limit = model.max_positions
    if limit is not None and size > limit:
        raise SaescopeError(
            f"context size {size} exceeds the {limit} positions {model.name} supports "
            "(max_position_embeddings); pass a smaller --context-size"
        )


# no_grad, not inference_mode: callers may edit the rows in place (inference tensors refuse it)
@torch.no_grad()
def site_rows(
    model: LanguageModel,
    input_ids: Tensor,
    sites: Sequence[str | Site],
    exclude_special: bool = True,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Rows:
    """Activations at ``sites`` of the kept positions of ``input_ids`` (B, T).

    ``dtype`` / ``device``: of the returned activations (default: as the model computed them,
    on its device). Raises SaescopeError if T exceeds ``model.max_positions``.
    """
    if input_ids.dim() != 2:
        raise SaescopeError(f"site_rows takes token ids (B, T), got shape {tuple(input_ids.shape)}")
    check_context_size(model, input_ids.shape[1])
    parsed = [model.site(s) for s in sites]
    keep = keep_positions(input_ids, model.tokenizer, exclude_special)  # (B, T)
    acts = run_with_cache(model, input_ids, parsed)  # each (B, T, d)
    rows = {}
    for site in parsed:
        kept = acts[site.name][keep.to(acts[site.name].device)]  # (N, d)
        rows[site.name] = kept.to(device=device, dtype=dtype)
    context, position = keep.nonzero(as_tuple=True)  # (N,), (N,)
    return Rows(rows, context, position, input_ids[keep], keep)
