"""Figures for the interpretation views (matplotlib, imported lazily; the ``plots`` extra).

Tokens are drawn with ``token_text``'s fallback fonts, so CJK and other scripts in a
multilingual vocabulary show as text, not boxes. The ``*_figure`` functions return the figure
(for tests and notebooks; close it with ``pyplot().close(fig)``), ``plot_*`` write a PNG."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from saescope._plotting import pyplot, token_text
from saescope.interpret.lens import LogitLens


def plot_logit_lens(
    lens: LogitLens, path: str | Path, k: int = 5, targets: Mapping[str, int] | None = None
) -> Path:
    """Write ``logit_lens_figure`` to ``path`` (a PNG)."""
    with token_text():
        fig = logit_lens_figure(lens, k, targets)
        return _save(fig, path, dpi=130)


def logit_lens_figure(lens: LogitLens, k: int = 5, targets: Mapping[str, int] | None = None) -> Any:
    """Heatmap: one row per stage, the k most probable tokens left to right, colour =
    probability, each cell labelled with its token. With ``targets`` (label -> token id), two
    more panels on the same rows: each target's probability and its rank (1 = top, log
    scale), one line per target."""
    plt = pyplot()
    top = lens.top(k)
    probs = [[p for _, p in row] for row in top]
    height = 0.32 * len(top) + 1.5
    width = 2.1 * k + 2 + (6.5 if targets else 0)
    ratios = [2.1 * k + 2, 3.2, 3.2] if targets else [1]
    with token_text():
        fig, axes = plt.subplots(
            1,
            len(ratios),
            figsize=(width, height),
            gridspec_kw={"width_ratios": ratios},
            squeeze=False,
            layout="constrained",
        )
        ax = axes[0, 0]
        image = ax.imshow(probs, aspect="auto", cmap="Blues", vmin=0, vmax=1)
        for r, row in enumerate(top):
            for c, (token, p) in enumerate(row):
                colour = "white" if p > 0.6 else "black"
                ax.text(
                    c, r, f"{token!r} {p:.2f}", ha="center", va="center", fontsize=7, color=colour
                )
        ax.set_yticks(range(len(lens.stages)), lens.stages, fontsize=7)
        ax.set_xticks(range(k), [f"#{i + 1}" for i in range(k)])
        token = lens.prompt_tokens[lens.position]
        prompt = "".join(lens.prompt_tokens)
        ax.set_title(f"logit lens at token {lens.position} ({token!r}) of {prompt!r}", fontsize=9)
        fig.colorbar(image, ax=ax, label="probability", location="left", shrink=0.6)
        if targets:
            _draw_targets(axes[0, 1], axes[0, 2], lens, targets)
    return fig


def _draw_targets(p_ax: Any, rank_ax: Any, lens: LogitLens, targets: Mapping[str, int]) -> None:
    probs, ranks = lens.track(list(targets.values()))  # (n_stages, n) each
    rows = list(range(len(lens.stages)))
    for j, label in enumerate(targets):
        p_ax.plot(probs[:, j].tolist(), rows, marker=".", label=repr(label))
        rank_ax.plot(ranks[:, j].tolist(), rows, marker=".", label=repr(label))
    for ax, name in ((p_ax, "probability"), (rank_ax, "rank (1 = top)")):
        ax.set_ylim(len(rows) - 0.5, -0.5)  # stage 0 on top, as in the heatmap
        ax.set_yticks(rows, [""] * len(rows))
        ax.grid(alpha=0.3)
        ax.set_xlabel(name, fontsize=8)
        ax.set_title(f"targets: {name}", fontsize=9)
    p_ax.set_xlim(0, max(1e-3, float(probs.max())) * 1.05)
    rank_ax.set_xscale("log")
    rank_ax.invert_xaxis()  # rank 1 on the right: better predictions point the same way
    p_ax.legend(fontsize=7, loc="lower right")


def plot_pictures(
    vectors: dict[str, Tensor],
    path: str | Path,
    title: str = "",
    limits: Mapping[str, float] | None = None,
) -> Path:
    """Write ``pictures_figure`` to ``path`` (a PNG)."""
    with token_text():
        return _save(pictures_figure(vectors, title, limits), path, dpi=120)


def pictures_figure(
    vectors: dict[str, Tensor], title: str = "", limits: Mapping[str, float] | None = None
) -> Any:
    """Each vector as a near-square image in diverging colours, in rows of up to 6. ``limits``
    (name -> L, e.g. from ``pictures.colour_limits``) draws a picture on [-L, L], values beyond
    saturated; without it, each picture on its own largest |value|."""
    from saescope.interpret.pictures import to_grid

    plt = pyplot()
    n = len(vectors)
    cols = min(n, 6)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.6 * cols, 2.6 * rows + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    image = None
    for ax, (name, vector) in zip(axes.flat, vectors.items(), strict=False):
        grid = to_grid(vector)
        limit = limits[name] if limits is not None else float(vector.float().abs().max())
        limit = limit or 1.0
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        clipped = int((vector.float().abs() > limit).sum())
        ax.set_title(
            f"{name}\n{tuple(grid.shape)}, |v| <= {limit:.3g}, {clipped} clipped", fontsize=8
        )
    if limits is not None and image is not None and len(set(limits.values())) == 1:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="value (clipped)")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _save(fig: Any, path: str | Path, dpi: int) -> Path:
    out = Path(path)
    try:
        fig.savefig(out, dpi=dpi)
    finally:
        pyplot().close(fig)
    return out
