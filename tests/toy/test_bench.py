"""The benchmark and its commands, at a tiny size: every registered architecture gets a row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saescope.cli import main
from saescope.errors import SaescopeError
from saescope.sae import ARCHITECTURES
from saescope.toy.bench import BenchConfig, run_bench
from saescope.toy.synthetic import SyntheticConfig, SyntheticData
from saescope.train.recipes import RECIPES

TINY = SyntheticConfig(d=8, n_free=16, l0=2.0, n_parents=2, children_per_parent=2)
TRAINABLE = [a for a in ARCHITECTURES if a in RECIPES]


def test_every_registered_architecture_is_benchmarked_at_matched_l0() -> None:
    cfg = BenchConfig(d_sae=32, l0=3, steps=20, batch_size=64, penalty_scales=(1.0,), eval_rows=512)
    rows = run_bench(SyntheticData(TINY), cfg)
    assert [r.architecture for r in rows] == TRAINABLE
    for row in rows:
        assert 0 <= row.recovered <= 1 and 0 <= row.dead <= 1 and 0 <= row.absorption <= 1
        if ARCHITECTURES[row.architecture].needs_k:
            assert row.setting == "k=3"
    assert next(r for r in rows if r.architecture == "topk").l0 == pytest.approx(3.0)


def test_bench_synthetic_command_writes_table_plot_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = ["bench", "synthetic", "--out", str(out), "--steps", "10", "--d", "8"]
    argv += ["--n-free", "16", "--data-l0", "2", "--d-sae", "16", "--l0", "2"]
    argv += ["--architecture", "topk", "--architecture", "relu"]
    assert main(argv) == 0
    record = json.loads((out / "bench.json").read_text())
    assert [r["architecture"] for r in record["rows"]] == ["topk", "relu"]
    assert (out / "bench.png").stat().st_size > 0
    assert "| topk | k=2 |" in (out / "bench.md").read_text()


def test_toy_command_writes_pictures_and_sae_scores(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    argv = ["toy", "--out", str(out), "--toy-steps", "30", "--steps", "10"]
    argv += ["--sparsity", "0", "0.9", "--sae-sparsity", "0.9", "--architecture", "topk"]
    assert main(argv) == 0
    for name in ("weights", "norms", "phase", "dimensionality"):
        assert (out / f"toy-{name}.png").stat().st_size > 0
    record = json.loads((out / "toy.json").read_text())
    assert [m["kind"] for m in record["models"]] == ["relu", "relu", "linear", "linear"]
    assert record["sae"]["rows"][0]["architecture"] == "topk"


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(SaescopeError, match="unknown architectures \\['nope'\\]"):
        BenchConfig(architectures=("nope",))
