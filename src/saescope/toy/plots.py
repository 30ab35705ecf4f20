"""Pictures of the toy models (as in Elhage et al. 2022) and of the benchmark table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from saescope._plotting import pyplot
from saescope.toy.bench import BenchRow
from saescope.toy.superposition import ToyModel


def plot_weights(models: Sequence[ToyModel], path: str | Path) -> Path:
    """Per model: W^T W (n, n) and the bias b as a column, on one diverging scale."""
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(models), figsize=(2.4 * len(models), 2.8), squeeze=False, layout="constrained"
    )
    image = None
    for ax, model in zip(axes[0], models, strict=True):
        gram = (model.W.T @ model.W).numpy()  # (n, n)
        both = [[*row, 0.0, float(b)] for row, b in zip(gram, model.b.numpy(), strict=True)]
        image = ax.imshow(both, cmap="RdBu", vmin=-1, vmax=1)
        ax.set_title(f"{model.cfg.kind}, 1-S={1 - model.cfg.sparsity:.3g}", fontsize=8)
        ax.set_xticks([model.cfg.n_features + 1], ["b"])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="W^T W | b")
    return _save(fig, path)


def plot_norms(models: Sequence[ToyModel], path: str | Path) -> Path:
    """Per model: ||W_i|| bars coloured by sum_{j != i} (Ŵ_i · W_j)^2 (dark: own dimension)."""
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(models), figsize=(2.4 * len(models), 2.6), squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("viridis")
    for ax, model in zip(axes[0], models, strict=True):
        geo = model.geometry()
        shared = geo.superposition.clamp(max=1).numpy()
        ax.barh(range(len(shared)), geo.norms.numpy(), color=cmap(shared))
        ax.invert_yaxis()
        ax.set_xlim(0, 1.3)
        ax.set_title(f"1-S={1 - model.cfg.sparsity:.3g}", fontsize=8)
        ax.set_xlabel("||W_i||", fontsize=8)
    axes[0][0].set_ylabel("feature (most important first)")
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(mappable, ax=axes[0].tolist(), shrink=0.8, label="superposition")
    return _save(fig, path)


def plot_phase(models: Sequence[ToyModel], path: str | Path) -> Path:
    """Features represented (||W_i|| > 0.5) and 1 / (dimensions per feature) against 1 - S."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    for kind, marker in (("relu", "o"), ("linear", "s")):
        chosen = [m for m in models if m.cfg.kind == kind]
        if not chosen:
            continue
        density = [1 - m.cfg.sparsity for m in chosen]
        ax.plot(density, [int(m.geometry().represented().sum()) for m in chosen], marker=marker,
                label=f"{kind}: features with ||W_i|| > 0.5")  # fmt: skip
        ax.plot(density, [1 / m.geometry().dimensions_per_feature for m in chosen],
                marker=marker, linestyle="--", label=f"{kind}: ||W||_F^2")  # fmt: skip
    m = models[0].cfg.d_hidden
    ax.axhline(m, color="grey", linewidth=0.8, linestyle=":", label=f"m = {m}")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("feature density 1 - S (sparser to the right)")
    ax.set_ylabel("features")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_dimensionality(models: Sequence[ToyModel], path: str | Path) -> Path:
    """Each feature's dimensionality D_i against 1 - S, with the polytope fractions marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    for model in models:
        if model.cfg.kind != "relu":
            continue
        geo = model.geometry()
        keep = geo.represented()
        density = 1 - model.cfg.sparsity
        ax.scatter([density] * int(keep.sum()), geo.dimensionality[keep].numpy(), s=14, alpha=0.6)
    for value, label in ((1, "1"), (3 / 4, "3/4"), (2 / 3, "2/3"), (1 / 2, "1/2"), (2 / 5, "2/5")):
        ax.axhline(value, color="grey", linewidth=0.5, linestyle=":")
        ax.text(1.0, value, label, fontsize=7, va="bottom")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("feature density 1 - S")
    ax.set_ylabel("dimensionality D_i")
    ax.set_title("ReLU model: features with ||W_i|| > 0.5", fontsize=9)
    return _save(fig, path)


BENCH_METRICS = (
    ("mean_max_cosine", "mean max cosine"),
    ("recovered", "recovered (cos > 0.9)"),
    ("fvu", "FVU"),
    ("dead", "dead latents"),
    ("absorption", "absorption rate"),
)


def plot_bench(rows: Sequence[BenchRow], path: str | Path) -> Path:
    """One bar panel per metric, one bar per architecture."""
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(BENCH_METRICS), figsize=(2.6 * len(BENCH_METRICS), 2.8), layout="constrained"
    )
    names = [r.architecture for r in rows]
    for ax, (key, label) in zip(axes, BENCH_METRICS, strict=True):
        values = [getattr(r, key) for r in rows]
        ax.bar(names, [0 if math.isnan(v) else v for v in values], color="C0")
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    return _save(fig, path)


def _save(fig: object, path: str | Path) -> Path:
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)
    return path
