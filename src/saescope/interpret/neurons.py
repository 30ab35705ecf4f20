"""Neurons: which fire on a prompt, and the corpus contexts that make one fire most."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from saescope._progress import progress_bar
from saescope.activations.extract import check_context_size
from saescope.data import ContextConfig, Corpus, keep_positions, pack_contexts
from saescope.errors import SaescopeError
from saescope.interpret.topk import StreamingTopK
from saescope.models import LanguageModel, run_with_cache
from saescope.models.families import mlp_down_weight

NEURON_RANKINGS = ("contribution", "activation")
"""How ``top_neurons`` orders units: by ``contribution`` (the default: what the unit writes) or
by ``|activation|``."""


@dataclass(frozen=True)
class UnitValue:
    """One unit's value at a position, and how much it writes there."""

    unit: int
    activation: float
    """Its value, signed (GELU and SiLU neurons go negative)."""
    contribution: float
    """``|activation|`` x the L2 norm of what one unit of it writes: for an ``mlp_act`` neuron
    its row of the MLP's down projection, elsewhere 1 (a unit is a coordinate of the site)."""


def output_norms(model: LanguageModel, site: str) -> torch.Tensor:
    """(units,): the L2 norm of what one unit of each unit of ``site`` writes (see UnitValue)."""
    s = model.site(site)
    if s.kind != "mlp_act":
        return torch.ones(model.site_dim(s))
    return mlp_down_weight(model.family, model.layers[s.layer]).float().norm(dim=1).cpu()


@torch.inference_mode()
def top_neurons(
    model: LanguageModel,
    prompt: str,
    site: str,
    position: int = -1,
    k: int = 10,
    rank: str = "contribution",
) -> list[UnitValue]:
    """The ``k`` units of ``site`` at ``position`` of ``prompt`` that write the most (``rank=
    "contribution"``) or have the largest ``|activation|`` (``"activation"``), negative values
    included, largest first."""
    if rank not in NEURON_RANKINGS:
        raise SaescopeError(f"rank must be one of {', '.join(NEURON_RANKINGS)}, got {rank!r}")
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    acts = run_with_cache(model, ids, [site])[model.site(site).name][0, position].float().cpu()
    contribution = acts.abs() * output_norms(model, site)  # (units,)
    score = contribution if rank == "contribution" else acts.abs()
    order = score.topk(min(k, len(score))).indices
    return [UnitValue(int(u), float(acts[u]), float(contribution[u])) for u in order]


@dataclass(frozen=True)
class Example:
    """One corpus position where a unit fired, with the text around it."""

    activation: float
    context: int
    position: int
    tokens: list[str]
    """The window of tokens around the position (the firing token at ``focus``)."""
    activations: list[float]
    """The unit's value at each token of the window."""
    focus: int


@torch.inference_mode()
def top_contexts(
    model: LanguageModel,
    site: str,
    units: list[int],
    corpus: Corpus,
    tokens: int,
    k: int = 10,
    context: ContextConfig = ContextConfig(),
    window: tuple[int, int] = (12, 4),
    batch_size: int = 16,
    progress: bool = True,
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[int, list[Example]]:
    """For each unit, the ``k`` corpus positions (of the first ``tokens``) where it is largest.

    Units index the site's activations, or ``encode(activations)`` when given (e.g. an SAE's
    dense latents: ``lambda a: sae.encode_dense(a)``). One streaming pass; memory is
    (units x k) plus the token ids of the contexts read.
    """
    name = model.site(site).name
    size = context.context_size
    check_context_size(model, size)
    top = StreamingTopK(len(units), k)
    stream = pack_contexts(corpus, model.tokenizer, context)
    seen: list[torch.Tensor] = []
    with progress_bar("tok", disable=not progress) as bar:
        task = bar.add_task("scan", total=tokens)
        while len(seen) * size < tokens:
            batch = list(itertools.islice(stream, batch_size))
            if not batch:
                break
            ids = torch.stack(batch)  # (B, T)
            acts = _units(run_with_cache(model, ids, [name])[name], units, encode)  # (B, T, u)
            keep = keep_positions(ids, model.tokenizer, context.exclude_special)  # (B, T)
            acts[~keep.to(acts.device)] = float("-inf")
            row_ids = torch.arange(len(seen) * size, (len(seen) + len(batch)) * size)
            top.update(acts.reshape(-1, len(units)), row_ids)
            seen.extend(batch)
            bar.update(task, advance=ids.numel())
    all_ids = torch.stack(seen)  # (contexts, T)
    hits = {
        u: [(float(v), int(r)) for v, r in zip(top.values[i], top.ids[i], strict=True) if r >= 0]
        for i, u in enumerate(units)
    }
    needed = sorted({r // size for rows in hits.values() for _, r in rows})
    windows = _rerun(model, name, units, all_ids, needed, batch_size, encode)  # ctx -> (T, u)
    return {
        unit: [
            _example(model, all_ids, windows, units.index(unit), v, r, size, window)
            for v, r in rows
        ]
        for unit, rows in hits.items()
    }


def _units(
    acts: torch.Tensor, units: list[int], encode: Callable[[torch.Tensor], torch.Tensor] | None
) -> torch.Tensor:
    return (acts if encode is None else encode(acts.float()))[..., units].float()


def _rerun(
    model: LanguageModel,
    site: str,
    units: list[int],
    all_ids: torch.Tensor,
    contexts: list[int],
    batch_size: int,
    encode: Callable[[torch.Tensor], torch.Tensor] | None,
) -> dict[int, torch.Tensor]:
    """The units' values over whole contexts, for the few contexts that made a top list."""
    out: dict[int, torch.Tensor] = {}
    for start in range(0, len(contexts), batch_size):
        chunk = contexts[start : start + batch_size]
        acts = _units(run_with_cache(model, all_ids[chunk], [site])[site], units, encode).cpu()
        out |= dict(zip(chunk, acts, strict=True))
    return out


def _example(
    model: LanguageModel,
    all_ids: torch.Tensor,
    acts: dict[int, torch.Tensor],
    u: int,
    value: float,
    row: int,
    size: int,
    window: tuple[int, int],
) -> Example:
    ctx, pos = divmod(row, size)
    lo, hi = max(0, pos - window[0]), min(size, pos + window[1] + 1)
    tokens = [model.tokenizer.decode([int(t)]) for t in all_ids[ctx, lo:hi]]
    return Example(value, ctx, pos, tokens, acts[ctx][lo:hi, u].tolist(), pos - lo)
