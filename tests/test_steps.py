"""The reuse-or-run steps of quickstart and walkthrough, on a tiny model: a first run makes every
artifact, a second one reuses them all without running a stage again."""

from __future__ import annotations

import json

import pytest

from saescope import steps


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(steps, "SHARD_ROWS", 1000)  # a shard closes after one batch (~2k rows)
    monkeypatch.setattr(steps, "HOLDOUT_ROWS", 500)


def _build(tmp_path, model, corpus):
    cache = steps.cached_activations(tmp_path / "acts", lambda: model, "layers.1.resid_post",
                                     2048, corpus)  # fmt: skip
    dirs = steps.trained_saes(tmp_path / "saes", cache, "layers.1.resid_post", [16, 64], 4, 1,
                              batch_size=128)  # fmt: skip
    report = steps.evaluation(dirs, tmp_path / "report", cache, lambda: model, 256, corpus)
    index = steps.feature_index(tmp_path / "index.db", dirs[0], cache, model, 512)
    return cache, dirs, report, index


def test_a_second_run_reuses_every_artifact_and_a_retrained_sae_is_scored_again(
    tmp_path, model, corpus, small_shards, monkeypatch
) -> None:
    cache, dirs, report, index = _build(tmp_path, model, corpus)
    assert [d.name for d in dirs] == ["topk-w16-k4", "topk-w64-k4"]
    assert cache.manifest.complete and index.exists() and report.exists()
    metrics = report.parent / "metrics.json"
    assert sorted(json.loads(metrics.read_text())["saes"]) == ["topk-w16-k4", "topk-w64-k4"]
    line = steps.heldout_line(dirs[0])
    assert "held-out tokens" in line and "dead by the trainer" in line

    def ran(*args, **kwargs):
        raise AssertionError("a stage ran again although its output is on disk")

    with monkeypatch.context() as patch:
        for name in ("capture", "train_saes", "evaluate_saes"):
            patch.setattr(steps, name, ran)
        patch.setattr("saescope.interpret.build.index_features", ran)
        again = _build(tmp_path, model, corpus)
    assert again[1:] == (dirs, report, index)

    before = metrics.stat().st_mtime_ns
    (dirs[1] / "sae_weights.safetensors").touch()  # newer than the report, as if retrained
    steps.evaluation(dirs, report.parent, cache, lambda: model, 256, corpus)
    assert metrics.stat().st_mtime_ns > before
