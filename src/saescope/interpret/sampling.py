"""Seeded sampling for ``generate`` without touching the process-wide random state.

transformers' ``generate`` samples with ``torch.multinomial`` on the global generator, so a
seed would have to be set with ``torch.manual_seed``, changing every later random draw of the
caller's program. Instead generation runs greedy with one extra logits processor that draws the
token itself, from its own ``torch.Generator``, and leaves only that token possible: greedy
decoding then takes exactly the draw."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList

from saescope.errors import SaescopeError


class SeededSampler(LogitsProcessor):
    """Draw each next token from softmax(scores / temperature), nucleus-filtered to ``top_p``."""

    def __init__(self, seed: int, device: torch.device, temperature: float, top_p: float | None):
        if not (math.isfinite(temperature) and temperature > 0):
            raise SaescopeError(f"temperature must be a finite number > 0, got {temperature}")
        if top_p is not None and not 0 < top_p <= 1:
            raise SaescopeError(f"top_p must be in (0, 1], got {top_p}")
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:  # scores (B, V)
        logits = scores.float() / self.temperature
        if self.top_p is not None:
            sorted_logits, order = logits.sort(-1, descending=True)  # (B, V)
            probs = sorted_logits.softmax(-1)
            # drop a token when the more probable ones already reach top_p; the first stays
            drop = probs.cumsum(-1) - probs >= self.top_p
            logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -torch.inf))
        pick = torch.multinomial(logits.softmax(-1), 1, generator=self.generator)  # (B, 1)
        only = torch.full_like(scores, -torch.inf)
        return only.scatter_(-1, pick, 0.0)


def sampling_kwargs(
    sample: bool, seed: int, device: torch.device, temperature: float, top_p: float | None
) -> dict:
    """Keyword arguments for ``generate``: greedy, plus the seeded sampler when sampling."""
    kwargs: dict = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if sample:
        kwargs["logits_processor"] = LogitsProcessorList(
            [SeededSampler(seed, device, temperature, top_p)]
        )
    return kwargs
