"""Figures for the interpretation views (matplotlib, imported lazily; the ``plots`` extra)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from torch import Tensor

from saescope._plotting import pyplot
from saescope.interpret.lens import LogitLens


def plot_logit_lens(lens: LogitLens, path: str | Path, k: int = 5) -> Path:
    """Heatmap: one row per stage, the k most probable tokens left to right, colour =
    probability, each cell labelled with its token."""
    plt = pyplot()
    with warnings.catch_warnings():  # scoped: the caller's warning filters stay as they were
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # CJK, Thai
        return _draw_logit_lens(plt, lens, path, k)


def _draw_logit_lens(plt: Any, lens: LogitLens, path: str | Path, k: int) -> Path:
    top = lens.top(k)
    probs = [[p for _, p in row] for row in top]
    height = 0.32 * len(top) + 1.5
    fig, ax = plt.subplots(figsize=(2.1 * k + 2, height))
    image = ax.imshow(probs, aspect="auto", cmap="Blues", vmin=0, vmax=1)
    for r, row in enumerate(top):
        for c, (token, p) in enumerate(row):
            ax.text(
                c,
                r,
                f"{token!r} {p:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if p > 0.6 else "black",
            )
    ax.set_yticks(range(len(lens.stages)), lens.stages, fontsize=7)
    ax.set_xticks(range(k), [f"#{i + 1}" for i in range(k)])
    target = lens.prompt_tokens[lens.position]
    ax.set_title(
        f"logit lens at token {lens.position} ({target!r}) of {''.join(lens.prompt_tokens)!r}",
        fontsize=9,
    )
    fig.colorbar(image, ax=ax, label="probability")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def plot_pictures(vectors: dict[str, Tensor], path: str | Path, title: str = "") -> Path:
    """Each vector as a near-square image (diverging colours, symmetric per image), in a row."""
    from saescope.interpret.pictures import to_grid

    plt = pyplot()
    n = len(vectors)
    cols = min(n, 6)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, vector) in zip(axes.flat, vectors.items(), strict=False):
        grid = to_grid(vector)
        limit = float(grid.nan_to_num(0).abs().max()) or 1.0
        ax.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        nonzero = int((vector != 0).sum())
        ax.set_title(f"{name}\n{tuple(grid.shape)}, {nonzero} non-zero", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
