"""Feature absorption on the first-letter task (Chanin et al. 2024, "A is for Absorption").

The task is built offline from the model's own vocabulary: every single token that decodes to a
space and 2+ ASCII letters (`` tartan``) is a word, labelled by its first letter. Each word is
read at its own position after a short spelling prompt (``ICL_PREFIX``), at the SAE's site.

The measurement, per letter L with enough words:

1. a logistic probe on the raw activations, 26-way over the letters, fitted on 70% of the words
   (its row for L, normalised, is the letter's direction ``p_L``);
2. the letter's SAE latents: the ``n_latents`` latents (k-sparse probing's choice) whose mean
   activation exceeds most, on the training words of L, that on the other words;
3. on the held-out words of L that the probe classifies correctly (the letter is there):
   a *false negative* when none of the letter's latents fire; *absorbed* when, in addition, an
   active latent carries the direction: the active latent with the largest projection
   ``a_j * (W_dec[j] . p_L)`` has decoder cosine with ``p_L`` of at least ``min_cosine`` and
   that projection is at least ``min_share`` of the projection of ``x - b_dec`` on ``p_L``.

The absorption rate of L is absorbed / probe-correct words, and the reported rate the mean over
letters (Chanin et al.'s "absorption fraction" is this with ablation in place of projection).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.evaluate.probing import fit_logistic, top_latents
from saescope.sae import SAE

ICL_PREFIX = "Spelling: mirth has the first letter M. tartan has the first letter T."
"""The prompt before each word (in the spirit of the paper's in-context first-letter prompt)."""

LETTERS = string.ascii_lowercase


@dataclass(frozen=True)
class LetterData:
    """Activations of words at the SAE's site, with their first letters."""

    acts: Tensor
    """(N, d_in)."""
    letters: Tensor
    """(N,) 0..25."""
    words: list[str]


def vocabulary_words(tokenizer: Any, limit: int | None = None) -> list[tuple[int, str]]:
    """(token id, word) for the vocabulary's single-token words: a leading space and 2+ ASCII
    letters, lower case; in id order (the first ``limit``)."""
    words = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text.startswith(" ") and len(text) > 2 and text[1:].isascii():
            word = text[1:]
            if word.isalpha() and word.islower():
                words.append((token_id, word))
    return words[:limit] if limit else words


def letter_data(model: Any, site: str, max_words: int = 4000, seed: int = 0) -> LetterData:
    """Activations at ``site`` of ``model`` (a ``LanguageModel``) of up to ``max_words``
    vocabulary words (a seeded sample), each after ``ICL_PREFIX``."""
    from saescope.models.hooks import run_with_cache

    tok = model.tokenizer
    words = vocabulary_words(tok)
    if not words:
        raise SaescopeError(
            f"the tokenizer of {model.name} has no single-token lower-case words with a "
            "leading space; the first-letter task cannot be built from it"
        )
    g = torch.Generator().manual_seed(seed)
    words = [words[i] for i in torch.randperm(len(words), generator=g)[:max_words].tolist()]
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    prefix = bos + tok(ICL_PREFIX, add_special_tokens=False)["input_ids"]
    name = model.site(site).name
    acts = []
    for start in range(0, len(words), 64):
        chunk = words[start : start + 64]
        ids = torch.tensor([[*prefix, token_id] for token_id, _ in chunk])  # (b, T): one length
        with torch.no_grad():
            acts.append(run_with_cache(model, ids, [site])[name][:, -1].float())
    letters = torch.tensor([LETTERS.index(w[0]) for _, w in words])
    return LetterData(torch.cat(acts), letters, [w for _, w in words])


@dataclass(frozen=True)
class LetterProbe:
    """The 26-way probe on raw activations, fitted on the ``train`` words (SAE-independent,
    so one probe serves every SAE of a site)."""

    weights: Tensor
    """(d_in, 26)."""
    bias: Tensor
    """(26,)."""
    train: Tensor
    """(N,) bool: the words it was fitted on."""


def letter_probe(data: LetterData, seed: int = 0) -> LetterProbe:
    """Fit the probe on a seeded 70% of the words."""
    g = torch.Generator().manual_seed(seed)
    n = len(data.letters)
    train = torch.ones(n, dtype=torch.bool)
    train[torch.randperm(n, generator=g)[: int(0.3 * n)]] = False
    W, b = fit_logistic(data.acts[train], data.letters[train], n_classes=len(LETTERS))
    return LetterProbe(W, b, train)


def absorption(
    sae: SAE,
    data: LetterData,
    probe: LetterProbe | None = None,
    n_latents: int = 1,
    min_words: int = 20,
    min_cosine: float = 0.025,
    min_share: float = 0.4,
) -> dict[str, Any]:
    """The measurement of the module docstring: the mean absorption and false-negative rates
    over letters with at least ``min_words`` words, and each letter's numbers. ``probe``:
    ``letter_probe(data)`` when not given."""
    probe = probe if probe is not None else letter_probe(data)
    W, b, train = probe.weights, probe.bias, probe.train
    n = len(data.letters)
    predicted = (data.acts @ W + b).argmax(-1)  # (N,)
    with torch.no_grad():
        Z = sae.encode_dense(data.acts)  # (N, d_sae)
        x_c = data.acts - sae.b_dec if sae.cfg.apply_b_dec_to_input else data.acts
        W_dec = sae.W_dec.detach()
        dec_unit = W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
    per_letter: dict[str, dict[str, Any]] = {}
    for li, letter in enumerate(LETTERS):
        mine = data.letters == li
        if int(mine.sum()) < min_words:
            continue
        direction = W[:, li] / W[:, li].norm().clamp_min(1e-12)  # (d,)
        latents = top_latents(Z[train], mine[train], n_latents, signed=True)
        present = ~train & mine & (predicted == li)
        if not present.any():
            continue
        fired = (Z[present][:, latents] > 0).any(-1)  # (P,)
        proj = Z[present] * (W_dec @ direction)  # (P, d_sae): each latent's part along p_L
        best = proj.argmax(-1)
        share = proj.gather(1, best[:, None]).squeeze(1) / (x_c[present] @ direction).clamp_min(
            1e-8
        )
        carries = (dec_unit[best] @ direction >= min_cosine) & (share >= min_share)
        absorbed = ~fired & carries
        per_letter[letter] = {
            "words": int(mine.sum()),
            "probe_correct": int(present.sum()),
            "latents": latents.tolist(),
            "false_negative_rate": float((~fired).float().mean()),
            "absorption_rate": float(absorbed.float().mean()),
            "absorbers": sorted({int(j) for j in best[absorbed]}),
        }
    if not per_letter:
        raise SaescopeError(
            f"no letter has {min_words}+ words the probe gets right among {n} words; "
            "use a larger vocabulary (--absorption needs the model's own tokenizer) or lower "
            "min_words"
        )
    rates = [v["absorption_rate"] for v in per_letter.values()]
    fn = [v["false_negative_rate"] for v in per_letter.values()]
    return {
        "words": n,
        "probe_accuracy": float((predicted[~train] == data.letters[~train]).float().mean()),
        "letters": len(per_letter),
        "absorption_rate": sum(rates) / len(rates),
        "false_negative_rate": sum(fn) / len(fn),
        "per_letter": per_letter,
    }
