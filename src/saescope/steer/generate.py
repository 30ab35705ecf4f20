"""Generation with interventions: transformers' ``generate`` (KV cache on) under ``intervene``.

The interventions apply to the prompt's forward pass and to every new token's; ``Positions``
are counted per sequence, so they mean the same thing with the cache on or off and under left
padding. ``samples`` rollouts of each prompt run as one batch; sampled rollouts are reproducible
from ``seed``, drawn from a generator of their own (``interpret.sampling``: the process-wide
random state is untouched), and the same seed with and without an intervention draws the same
random numbers, so differences between clean and steered text come from the intervention.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.interpret.sampling import sampling_kwargs
from saescope.models import LanguageModel
from saescope.models.families import get_module
from saescope.steer.interventions import Intervention, intervene
from saescope.steer.positions import Positions


@dataclass(frozen=True)
class GenerationConfig:
    """How to continue a prompt."""

    max_new_tokens: int = 40
    samples: int = 1
    """Rollouts per prompt, generated in one batch."""
    sample: bool = False
    """Sample (True) or greedy decoding (False; then every rollout is the same)."""
    temperature: float = 1.0
    top_p: float | None = None
    seed: int = 0
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.samples < 1:
            raise SaescopeError(
                f"max_new_tokens and samples must be >= 1, got {self.max_new_tokens} and "
                f"{self.samples}"
            )
        if self.sample and self.temperature <= 0:
            raise SaescopeError(f"temperature must be > 0 to sample, got {self.temperature}")


GREEDY = GenerationConfig()
"""40 greedy tokens, one rollout."""


@dataclass(frozen=True)
class Rollouts:
    """The continuations of one prompt."""

    prompt: str
    texts: list[str]
    """One continuation per sample, without the prompt, special tokens dropped."""
    tokens: Tensor
    """(samples, new) generated token ids: new <= max_new_tokens (generation stops when every
    row has ended); rows that end early are padded."""


@torch.inference_mode()
def generate_with(
    model: LanguageModel,
    prompts: str | Sequence[str],
    interventions: Sequence[Intervention] = (),
    config: GenerationConfig = GREEDY,
) -> list[Rollouts]:
    """Continue each prompt ``config.samples`` times with ``interventions`` applied."""
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not texts or any(not t for t in texts):
        raise SaescopeError("generate_with needs non-empty prompts")
    batch = [t for t in texts for _ in range(config.samples)]
    enc = model.tokenizer(batch, return_tensors="pt", padding=True, padding_side="left")
    ids = enc["input_ids"].to(model.device)  # (P * samples, T), left-padded
    mask = enc["attention_mask"].to(model.device)
    lengths = mask.sum(-1)  # (P * samples,) real prompt tokens per row
    _check_reachable(interventions, lengths, config.max_new_tokens)
    with (
        contiguous_unembedding(model),
        intervene(model, interventions, prompt_lengths=lengths),
    ):
        out = model.hf.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=config.max_new_tokens,
            use_cache=config.use_cache,
            pad_token_id=_pad_id(model),
            **sampling_kwargs(
                config.sample, config.seed, model.device, config.temperature, config.top_p
            ),
        )
    new = out[:, ids.shape[1] :].cpu()  # (P * samples, new)
    decoded = model.tokenizer.batch_decode(new, skip_special_tokens=True)
    n = config.samples
    return [
        Rollouts(text, decoded[i * n : (i + 1) * n], new[i * n : (i + 1) * n])
        for i, text in enumerate(texts)
    ]


def _check_reachable(
    interventions: Sequence[Intervention], lengths: Tensor, max_new_tokens: int
) -> None:
    """Refuse token indices no forward pass of this generation feeds, which would edit nothing.

    Rows hold prompt + max_new_tokens tokens at most, and the last new token is never fed back,
    so indices run from 0 to longest prompt + max_new_tokens - 2."""
    longest, shortest = int(lengths.max()), int(lengths.min())
    for intervention in interventions:
        where = getattr(intervention, "positions", None)
        if not isinstance(where, Positions) or where.indices is None:
            continue
        low = 0 if where.prompt else shortest
        high = longest + max_new_tokens - 2 if where.generated else longest - 1
        never = [i for i in where.indices if not low <= i <= high]
        if never:
            kind = {(True, True): "", (False, True): "generated ", (True, False): "prompt "}
            raise SaescopeError(
                f"token indices {never} are never reached: {kind[where.prompt, where.generated]}"
                f"tokens of this generation run from {low} to {high} (prompts of {shortest}.."
                f"{longest} tokens + {max_new_tokens} new, BOS = 0); choose indices in that "
                "range or raise max_new_tokens"
            )


@contextmanager
def contiguous_unembedding(model: LanguageModel) -> Iterator[None]:
    """Give the unembedding a contiguous input inside the block (no value changes).

    At the prompt's forward pass ``generate`` unembeds only the last position, a strided
    (B, 1, d) view of the hidden states; torch's CPU bf16 matmul takes a path about 500x slower
    on strided input (measured: 48 s instead of 0.09 s for 24 rows against Gemma's 262k-token
    vocabulary, torch 2.13), which dominated generation time on CPU."""

    def contiguous(module: Any, args: tuple) -> tuple:
        return (args[0].contiguous(), *args[1:])

    handle = get_module(model.hf, model.family.unembed).register_forward_pre_hook(contiguous)
    try:
        yield
    finally:
        handle.remove()


def _pad_id(model: LanguageModel) -> int:
    tok = model.tokenizer
    for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0
