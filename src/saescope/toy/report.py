"""The two jobs of ``saescope toy`` and ``saescope bench synthetic``: train, score, write a JSON
file, the plots and a markdown table into one output folder."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from saescope._files import strict_json, write_atomic
from saescope.toy import plots
from saescope.toy.bench import BenchConfig, BenchRow, run_bench
from saescope.toy.superposition import ToyConfig, ToyHidden, ToyModel, train_toys
from saescope.toy.synthetic import SyntheticConfig, SyntheticData

SPARSITIES = (0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999)
"""The default sweep of S, dense to very sparse."""


def bench_table(rows: Sequence[BenchRow]) -> str:
    """The benchmark rows as a markdown table."""

    def num(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.3f}"

    lines = [
        "| architecture | setting | L0 | FVU | mean max cos | recovered > 0.9 | dead | "
        "absorption | parent missed | parents found |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.architecture, r.setting, f"{r.l0:.2f}", num(r.fvu), num(r.mean_max_cosine),
                 num(r.recovered), num(r.dead), num(r.absorption), num(r.parent_missed),
                 num(r.parents_found)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def toy_table(models: Sequence[ToyModel]) -> str:
    lines = [
        "| model | 1 - S | loss | features with norm > 0.5 | dims per feature |",
        "|---|---|---|---|---|",
    ]
    for m in models:
        geo = m.geometry()
        lines.append(
            f"| {m.cfg.kind} | {1 - m.cfg.sparsity:.3g} | {m.loss:.5f} | "
            f"{int(geo.represented().sum())} | {geo.dimensions_per_feature:.3f} |"
        )
    return "\n".join(lines)


def run_toy(
    out: str | Path,
    cfg: ToyConfig | None = None,
    sparsities: Sequence[float] = SPARSITIES,
    sae_sparsity: float = 0.97,
    bench: BenchConfig | None = None,
) -> dict[str, Any]:
    """Train the ReLU and linear models of ``cfg`` (default ``ToyConfig()``) at every sparsity, draw the four pictures, then train
    every SAE architecture on the hidden activations of the ReLU model nearest
    ``sae_sparsity`` and score how well each recovers its represented features.

    Writes ``toy.json``, ``toy.md`` and ``toy-*.png`` into ``out``; returns what toy.json holds.
    """
    cfg = cfg or ToyConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    relu = train_toys(replace(cfg, kind="relu"), sparsities)
    linear = train_toys(replace(cfg, kind="linear"), sparsities)
    shown = [m for m in relu if m.cfg.sparsity in (sparsities[0], *sparsities[2::2])]
    pictures = {
        "weights": plots.plot_weights([linear[0], *shown], out / "toy-weights.png"),
        "norms": plots.plot_norms(shown, out / "toy-norms.png"),
        "phase": plots.plot_phase([*relu, *linear], out / "toy-phase.png"),
        "dimensionality": plots.plot_dimensionality(relu, out / "toy-dimensionality.png"),
    }
    model = min(relu, key=lambda m: abs(m.cfg.sparsity - sae_sparsity))
    truth = ToyHidden(model)
    density = cfg.n_features * (1 - model.cfg.sparsity)
    bench = bench or BenchConfig(
        d_sae=2 * cfg.n_features, l0=max(1, round(density)), steps=1_000, eval_rows=8_192
    )
    rows = run_bench(truth, bench)
    result = {
        "config": asdict(cfg),
        "models": [_toy_record(m) for m in [*relu, *linear]],
        "sae": {
            "sparsity": model.cfg.sparsity,
            "represented": len(truth.features),
            "bench": asdict(bench),
            "rows": [r.to_dict() for r in rows],
        },
        "plots": {k: str(v.name) for k, v in pictures.items()},
    }
    write_atomic(out / "toy.json", strict_json(result).encode())
    text = f"{toy_table([*relu, *linear])}\n\nSAEs on the hidden activations at 1 - S = "
    text += f"{1 - model.cfg.sparsity:.3g} ({len(truth.features)} features represented):\n\n"
    write_atomic(out / "toy.md", (text + bench_table(rows) + "\n").encode())
    return json.loads(strict_json(result))


def _toy_record(m: ToyModel) -> dict[str, Any]:
    geo = m.geometry()
    return {
        "kind": m.cfg.kind,
        "sparsity": m.cfg.sparsity,
        "loss": m.loss,
        "norms": geo.norms.tolist(),
        "superposition": geo.superposition.tolist(),
        "dimensionality": geo.dimensionality.tolist(),
        "dimensions_per_feature": geo.dimensions_per_feature,
    }


def run_synthetic_bench(
    out: str | Path, data: SyntheticConfig | None = None, bench: BenchConfig | None = None
) -> list[BenchRow]:
    """Every architecture on ``data`` at matched L0 (defaults: the configs' defaults):
    ``bench.json``, ``bench.md``, ``bench.png``."""
    data, bench = data or SyntheticConfig(), bench or BenchConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run_bench(SyntheticData(data), bench)
    record = {"data": asdict(data), "bench": asdict(bench), "rows": [r.to_dict() for r in rows]}
    write_atomic(out / "bench.json", strict_json(record).encode())
    write_atomic(out / "bench.md", (bench_table(rows) + "\n").encode())
    plots.plot_bench(rows, out / "bench.png")
    return rows
