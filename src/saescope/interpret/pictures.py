"""Vectors as pictures: a residual-stream vector (or an SAE's latents) laid out on a near-square
grid, so that dense and sparse codes can be seen side by side (as in the Welch Labs
walkthrough of Gemma)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from saescope.models import LanguageModel, run_with_cache


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


@torch.inference_mode()
def residual_vectors(
    model: LanguageModel, prompt: str, position: int = -1, layers: list[int] | None = None
) -> dict[str, Tensor]:
    """The residual stream at ``position`` after each chosen layer (``layers.i.resid_post``),
    plus the embeddings (``embed``)."""
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    chosen = list(range(model.n_layers)) if layers is None else layers
    sites = ["layers.0.resid_pre", *(f"layers.{i}.resid_post" for i in chosen)]
    acts = run_with_cache(model, ids, sites)
    out = {"embed": acts["layers.0.resid_pre"][0, position].float().cpu()}
    out |= {
        f"layers.{i}": acts[f"layers.{i}.resid_post"][0, position].float().cpu() for i in chosen
    }
    return out
