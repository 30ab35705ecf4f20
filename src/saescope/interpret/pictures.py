"""Vectors as pictures: a residual-stream vector (or an SAE's latents) laid out on a near-square
grid, so that dense and sparse codes can be seen side by side (as in the Welch Labs
walkthrough of Gemma)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.models import LanguageModel, run_with_cache

Scale = Literal["percentile", "shared", "symmetric"]
SCALES: tuple[Scale, ...] = ("percentile", "shared", "symmetric")
"""``percentile``: one symmetric limit for all pictures, the ``clip``-th percentile of |value|
over all of them (values beyond are saturated: one huge dimension, such as Gemma's constant
one, no longer greys out the rest); ``shared``: one limit, the largest |value| of all;
``symmetric``: each picture on its own largest |value|."""


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols >= n, as square as possible: an exact factorisation when a
    divisor is near sqrt(n) (640 -> 20 x 32, 2304 -> 48 x 48, 16384 -> 128 x 128), else a
    padded square."""
    root = math.isqrt(n)
    rows = next(r for r in range(root, 0, -1) if n % r == 0)
    if rows * 2 >= root:
        return rows, n // rows
    side = math.ceil(math.sqrt(n))
    return side, math.ceil(n / side)


def to_grid(vector: Tensor) -> Tensor:
    """(n,) -> (rows, cols); padding cells (if any) are NaN, drawn blank."""
    rows, cols = grid_shape(vector.numel())
    grid = torch.full((rows * cols,), float("nan"))
    grid[: vector.numel()] = vector.detach().float().cpu().reshape(-1)
    return grid.reshape(rows, cols)


def from_grid(grid: Tensor, n: int) -> Tensor:
    """Inverse of ``to_grid``."""
    return grid.reshape(-1)[:n]


def colour_limits(
    vectors: dict[str, Tensor], scale: Scale = "percentile", clip: float = 99.0
) -> dict[str, float]:
    """Name -> L: draw that picture on [-L, L] (see ``SCALES``). ``clip`` is a percentile in
    (0, 100], used by ``percentile`` only."""
    if scale not in SCALES:
        raise SaescopeError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if not 0 < clip <= 100:
        raise SaescopeError(f"the clip percentile must be in (0, 100], got {clip}")
    if not vectors:
        raise SaescopeError("no vectors to draw")
    magnitudes = {name: v.detach().float().abs().reshape(-1).cpu() for name, v in vectors.items()}
    if scale == "symmetric":
        return {name: float(m.max()) for name, m in magnitudes.items()}
    everything = torch.cat(list(magnitudes.values()))  # (sum of sizes,)
    limit = float(everything.max())
    if scale == "percentile":
        limit = float(torch.quantile(everything.double(), clip / 100))
    return dict.fromkeys(vectors, limit)


def clipped_values(
    vectors: dict[str, Tensor], limits: dict[str, float]
) -> dict[str, list[tuple[int, float]]]:
    """Name -> the (dimension, value) pairs with |value| > that picture's limit, largest
    |value| first: what a clipped colour scale saturates."""
    out = {}
    for name, vector in vectors.items():
        v = vector.detach().float().reshape(-1).cpu()
        dims = (v.abs() > limits[name]).nonzero().reshape(-1)
        order = v[dims].abs().argsort(descending=True)
        out[name] = [(int(d), float(v[d])) for d in dims[order]]
    return out


@torch.inference_mode()
def residual_vectors(
    model: LanguageModel, prompt: str, position: int = -1, layers: list[int] | None = None
) -> dict[str, Tensor]:
    """The residual stream at ``position`` after each chosen layer (``layers.i.resid_post``),
    plus the embeddings (``embed``)."""
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    if not -ids.shape[1] <= position < ids.shape[1]:
        raise SaescopeError(f"position {position} is outside the prompt's {ids.shape[1]} tokens")
    chosen = list(range(model.n_layers)) if layers is None else layers
    outside = [i for i in chosen if not 0 <= i < model.n_layers]
    if outside:
        raise SaescopeError(
            f"layers {outside} are outside {model.name}'s layers 0..{model.n_layers - 1}"
        )
    sites = ["layers.0.resid_pre", *(f"layers.{i}.resid_post" for i in chosen)]
    acts = run_with_cache(model, ids, sites)
    out = {"embed": acts["layers.0.resid_pre"][0, position].float().cpu()}
    out |= {
        f"layers.{i}": acts[f"layers.{i}.resid_post"][0, position].float().cpu() for i in chosen
    }
    return out
