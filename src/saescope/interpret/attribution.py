"""What a feature does, from weights alone: the tokens it promotes, its neighbours, its neurons."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from saescope.models import LanguageModel
from saescope.models.families import get_module
from saescope.models.forward import final_norm


def _norm_gain(norm: nn.Module, direction: Tensor, offset: float) -> Tensor:
    """``direction`` (n, d) through the final norm's affine part, as TransformerLens folds it:
    LayerNorm centres then scales by its weight; RMSNorm scales by its weight plus the family's
    ``norm_gain_offset`` (Gemma's ``1 + weight``). The division by the norm of the whole residual is a positive scalar per
    position and does not change which tokens a direction promotes, so it is left out."""
    weight = getattr(norm, "weight", None)
    if isinstance(norm, nn.LayerNorm):
        direction = direction - direction.mean(-1, keepdim=True)
    if weight is None:
        return direction
    gain = weight.detach().float().to(direction.device) + offset
    return direction * gain


@torch.inference_mode()
def logit_attribution(
    model: LanguageModel, directions: Tensor, k: int = 10, chunk: int = 256
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top ``k`` promoted and suppressed tokens of each write direction (n, d_model).

    Returns (promoted values, promoted ids, suppressed values, suppressed ids), each (n, k):
    the direct effect of one unit of the feature on each token's logit.
    """
    norm = final_norm(model)
    unembed = cast(Tensor, get_module(model.hf, model.family.unembed).weight)  # (vocab, d_model)
    dtype = torch.bfloat16 if model.dtype == torch.bfloat16 else torch.float32
    w_u = unembed.detach().to(dtype)
    out: list[list[Tensor]] = [[], [], [], []]
    for start in range(0, len(directions), chunk):
        chunk_dirs = directions[start : start + chunk].float().to(w_u.device)
        d = _norm_gain(norm, chunk_dirs, model.family.norm_gain_offset)
        logits = d.to(dtype) @ w_u.t()  # (chunk, vocab)
        top = logits.topk(k, dim=1)
        bottom = logits.topk(k, dim=1, largest=False)
        for i, t in enumerate((top.values, top.indices, bottom.values, bottom.indices)):
            out[i].append(t.cpu())
    pv, pi, sv, si = (torch.cat(parts) for parts in out)
    pv, sv = pv.float(), sv.float()
    return pv, pi, sv, si


@torch.inference_mode()
def nearest_neighbours(rows: Tensor, k: int = 10, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """For each row of ``rows`` (n, d), the ``k`` other rows of largest cosine: (cosines, ids)."""
    unit = torch.nn.functional.normalize(rows.float(), dim=1)
    k = min(k, len(rows) - 1)
    values, indices = [], []
    for start in range(0, len(unit), chunk):
        cos = unit[start : start + chunk] @ unit.t()  # (chunk, n)
        cos[torch.arange(len(cos)), torch.arange(start, start + len(cos))] = float("-inf")
        top = cos.topk(k, dim=1)
        values.append(top.values)
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


def top_neurons_of(rows: Tensor, k: int = 10) -> tuple[Tensor, Tensor]:
    """For decoder rows over MLP neurons (n, d_mlp): the ``k`` neurons of largest |weight|, as
    (signed weights, neuron ids)."""
    k = min(k, rows.shape[1])
    ids = rows.abs().topk(k, dim=1).indices
    return rows.gather(1, ids), ids
