"""Next-token predictions and the logit lens: the residual stream read through the unembedding.

At every stage of the forward pass (the embeddings, after each attention block, after each MLP
block) the residual stream at one position goes through the model's own final norm, unembedding
and logit soft-capping (Gemma 2/3), giving the distribution the model would predict if it
stopped there (nostalgebraist, 2020). The last stage is exactly the model's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.models import LanguageModel, run_with_cache
from saescope.models.forward import unembed  # re-exported: examples import it from here


def _encode(model: LanguageModel, prompt: str) -> Tensor:
    ids = model.tokenizer(prompt, return_tensors="pt")[
        "input_ids"
    ]  # (1, T), BOS if the model uses one
    if ids.shape[1] == 0:
        raise SaescopeError("the prompt is empty after tokenization")
    return ids


def _decode_each(model: LanguageModel, ids: Tensor) -> list[str]:
    return [model.tokenizer.decode([int(i)]) for i in ids.reshape(-1)]


@dataclass(frozen=True)
class Prediction:
    """The model's next-token distribution after a prompt."""

    prompt_tokens: list[str]
    probs: Tensor
    """(vocab,) probabilities of the next token."""
    tokenizer: object

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        values, indices = self.probs.topk(k)
        decode = self.tokenizer.decode  # type: ignore[attr-defined]
        return [(decode([int(i)]), float(v)) for v, i in zip(values, indices, strict=True)]


@torch.inference_mode()
def predict(model: LanguageModel, prompt: str) -> Prediction:
    ids = _encode(model, prompt)
    logits = model.hf(input_ids=ids.to(model.device), use_cache=False).logits[0, -1]
    return Prediction(_decode_each(model, ids), logits.float().softmax(-1).cpu(), model.tokenizer)


@torch.inference_mode()
def continue_text(
    model: LanguageModel,
    prompt: str,
    new_tokens: int,
    sample: bool = False,
    seed: int = 0,
    temperature: float = 1.0,
) -> str:
    """Greedy (or seeded sampled) continuation of ``prompt``, without the prompt; sampling uses
    its own generator, so the process-wide random state is left as it was."""
    from saescope.interpret.sampling import sampling_kwargs

    ids = _encode(model, prompt).to(model.device)
    out = model.hf.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        pad_token_id=model.tokenizer.pad_token_id,
        **sampling_kwargs(sample, seed, model.device, temperature, None),
    )
    return str(model.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


@dataclass(frozen=True)
class LogitLens:
    """The distribution read off the residual stream at each stage, at one position."""

    prompt_tokens: list[str]
    position: int
    """Index of the token read (non-negative)."""
    stages: list[str]
    """``embed``, then ``layers.i.attn`` (after attention) and ``layers.i.mlp`` (after the MLP)."""
    logits: Tensor
    """(n_stages, vocab) float32 logits, computed in float32 whatever the model's dtype: bf16
    logits keep 8 significant bits, so near tokens tie and ranks collapse."""
    probs: Tensor
    """(n_stages, vocab) float32 probabilities (the softmax of ``logits``)."""
    tokenizer: object

    def top(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per stage, the k most probable tokens."""
        decode = self.tokenizer.decode  # type: ignore[attr-defined]
        values, indices = self.probs.topk(k, dim=-1)
        return [
            [(decode([int(i)]), float(v)) for v, i in zip(vs, ix, strict=True)]
            for vs, ix in zip(values, indices, strict=True)
        ]

    def track(self, token_ids: list[int]) -> tuple[Tensor, Tensor]:
        """(probabilities, ranks) of the given tokens at each stage: two (n_stages, n) tensors.
        Rank 1 is the most probable token; a token's rank is 1 + the number of tokens with a
        strictly larger logit (from the float32 logits, since far-down probabilities underflow
        to 0 and would tie)."""
        ids = torch.tensor(token_ids, dtype=torch.long)
        probs = self.probs[:, ids]  # (n_stages, n)
        chosen = self.logits[:, ids]  # (n_stages, n)
        ranks = 1 + (self.logits.unsqueeze(1) > chosen.unsqueeze(-1)).sum(-1)  # (n_stages, n)
        return probs, ranks


@torch.inference_mode()
def logit_lens(model: LanguageModel, prompt: str, position: int = -1) -> LogitLens:
    """The logit lens at ``position`` of ``prompt`` (default: the last token), in float32."""
    ids = _encode(model, prompt)
    n = model.n_layers
    if not -ids.shape[1] <= position < ids.shape[1]:
        raise SaescopeError(f"position {position} is outside the prompt's {ids.shape[1]} tokens")
    sites = [
        f"layers.{i}.{kind}" for i in range(n) for kind in ("resid_pre", "attn_out", "resid_post")
    ]
    acts = {name: a[0, position].float() for name, a in run_with_cache(model, ids, sites).items()}
    stages, resid = ["embed"], [acts["layers.0.resid_pre"]]
    for i in range(n):
        mid = acts[f"layers.{i}.resid_pre"] + acts[f"layers.{i}.attn_out"]  # (d,)
        stages += [f"layers.{i}.attn", f"layers.{i}.mlp"]
        resid += [mid, acts[f"layers.{i}.resid_post"]]
    logits = unembed(model, torch.stack(resid), dtype=torch.float32).cpu()  # (n_stages, vocab)
    index = position % ids.shape[1]
    return LogitLens(
        _decode_each(model, ids), index, stages, logits, logits.softmax(-1), model.tokenizer
    )
