"""The Neuronpedia export: every key the importer reads, of the right type and range, and the
values of the index it was exported from."""

from __future__ import annotations

import itertools
import json

import pytest

from saescope import cli
from saescope.data import ContextConfig
from saescope.errors import SaescopeError
from saescope.interpret.build import index_features
from saescope.interpret.collect import CollectConfig
from saescope.interpret.neuronpedia import NeuronpediaConfig, export_neuronpedia
from saescope.interpret.query import FeatureIndex
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"
FEATURES = 40

BATCH_KEYS = {"model_id", "layer", "sae_set", "sae_id_suffix", "features"}
"""NeuronpediaDashboardBatch.to_dict (sae-dashboard 0.8.0)."""
LIST_KEYS = {
    "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
    "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
    "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson",
    "neg_str", "neg_values", "pos_str", "pos_values",
    "freq_hist_data_bar_values", "freq_hist_data_bar_heights",
    "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
    "decoder_weights_dist", "activations", "vector",
}  # fmt: skip
FEATURE_KEYS = LIST_KEYS | {
    "feature_index", "frac_nonzero", "n_prompts_total", "n_tokens_in_prompt", "dataset",
}  # fmt: skip
"""NeuronpediaDashboardFeature.to_dict: what the importer reads with ``feature_data[key]``."""
ACTIVATION_KEYS = {
    "bin_min",
    "bin_max",
    "bin_contains",
    "tokens",
    "values",
    "qualifying_token_index",
}


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    from tiny_models import tiny_corpus, tiny_model, tiny_tokenizer

    root = tmp_path_factory.mktemp("neuronpedia")
    model = tiny_model("llama", tiny_tokenizer())
    cfg = SAEConfig(
        d_in=64, d_sae=FEATURES, architecture="topk", k=4,
        metadata=SAEMetadata(hook_name=SITE, model_name=model.name),
    )  # fmt: skip
    save_sae(build_sae(cfg, seed=1), root / "sae")
    path = root / "index.db"
    index_features(
        path, sae_dir=root / "sae", model=model, corpus=tiny_corpus(),
        context=ContextConfig(context_size=32), tokens=600,
        collect=CollectConfig(top=5, samples=8, zeros=2, before=4, after=2, zero_pool=16),
        progress=False,
    )  # fmt: skip
    return path


def _exported(out):
    files = sorted(out.glob("batch-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    return [json.loads(p.read_text()) for p in files]


def check_like_the_importer(batch: dict) -> None:
    """What neuronpedia's importer does with a batch: read every key, and per activation take
    max(values) and its index."""
    assert set(batch) == BATCH_KEYS
    assert isinstance(batch["model_id"], str) and isinstance(batch["layer"], int)
    for feature in batch["features"]:
        assert set(feature) == FEATURE_KEYS
        for key in LIST_KEYS:
            assert isinstance(feature[key], list), key
        for act in feature["activations"]:
            assert set(act) == ACTIVATION_KEYS
            values, tokens = act["values"], act["tokens"]
            assert len(values) == len(tokens) > 0
            assert all(isinstance(t, str) for t in tokens)
            assert all(isinstance(v, float) for v in values)
            assert values.index(max(values)) <= act["qualifying_token_index"] < len(values)
            assert values[act["qualifying_token_index"]] == max(values)


def test_export_has_every_field_in_range_and_the_index_values(index_path, tmp_path) -> None:
    out = tmp_path / "np"
    paths = export_neuronpedia(index_path, out, NeuronpediaConfig(batch_size=16))
    assert [p.name for p in paths] == ["batch-0.json", "batch-1.json", "batch-2.json"]
    batches = _exported(out)
    features = [f for b in batches for f in b["features"]]
    assert [f["feature_index"] for f in features] == list(range(FEATURES))
    assert [len(b["features"]) for b in batches] == [16, 16, 8]
    fired = 0
    with FeatureIndex(index_path) as index:
        for batch in batches:
            check_like_the_importer(batch)
            assert batch["layer"] == 1 and batch["model_id"] == index.meta["model"]
            assert batch["sae_set"] == f"saescope-res-{FEATURES}"
        for feature in features:
            record = index.feature(feature["feature_index"])
            assert 0.0 <= feature["frac_nonzero"] <= 1.0
            assert feature["frac_nonzero"] == pytest.approx(record.density)
            assert feature["n_tokens_in_prompt"] == 32 and feature["n_prompts_total"] >= 600 / 31
            assert feature["pos_str"] == [t for t, _ in record.promoted] and record.promoted
            assert feature["neg_str"] == [t for t, _ in record.suppressed]
            assert feature["pos_values"] == pytest.approx([v for _, v in record.promoted], abs=1e-5)
            assert feature["neg_values"] == pytest.approx(
                [v for _, v in record.suppressed], abs=1e-5
            )
            assert feature["pos_values"] == sorted(feature["pos_values"], reverse=True)
            heights, values = (
                feature["freq_hist_data_bar_heights"],
                feature["freq_hist_data_bar_values"],
            )
            assert len(heights) == len(values) and all(h >= 0 for h in heights)
            assert sum(heights) == record.fires  # every firing counted once
            assert all(0 < a < b for a, b in itertools.pairwise(values))
            acts = feature["activations"]
            assert len(acts) == len(record.top) + len(record.samples)
            if not record.fires:
                assert acts == [] and heights == []
                continue
            fired += 1
            assert heights[0] > 0 and heights[-1] > 0  # trimmed to the non-empty span
            # top examples first, as in the index, marked as SAEDashboard marks its top group
            for act, example in zip(acts, record.top, strict=False):
                assert act["tokens"] == example.tokens
                assert act["values"] == pytest.approx(example.activations, abs=1e-4)
                assert act["qualifying_token_index"] == example.focus
                assert act["values"][example.focus] == pytest.approx(example.activation, rel=2e-3)
                assert (act["bin_min"], act["bin_contains"]) == (-1, -1)
                assert act["bin_max"] == pytest.approx(record.max_activation, rel=1e-4)
            # then the sample, strongest quantile first, each group's range and share
            expected = []
            for q in sorted({q for q, _ in record.samples}, reverse=True):
                group = [e for k, e in record.samples if k == q]
                acts_q = [e.activation for e in group]
                share = len(group) / len(record.samples)
                expected += [(e, min(acts_q), max(acts_q), share) for e in group]
            for act, (example, lo, hi, share) in zip(
                acts[len(record.top) :], expected, strict=True
            ):
                assert act["tokens"] == example.tokens
                assert act["qualifying_token_index"] == example.focus
                assert (act["bin_min"], act["bin_max"]) == pytest.approx((lo, hi), rel=1e-4)
                assert act["bin_contains"] == pytest.approx(share, abs=1e-5) and 0 < share <= 1
                assert lo <= example.activation <= hi
    assert fired > FEATURES // 2  # the checks above ran on real examples


def test_cli_export_and_run_settings(index_path, tmp_path, capsys) -> None:
    out = tmp_path / "np"
    argv = ["export", "neuronpedia", "--index", str(index_path), "--out", str(out),
            "--model-id", "tiny-llama", "--source-id", "test-res-40", "--batch-size", "40"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "1 batch files" in capsys.readouterr().out
    (batch,) = _exported(out)
    check_like_the_importer(batch)
    assert (batch["model_id"], batch["sae_set"], batch["layer"]) == ("tiny-llama", "test-res-40", 1)
    settings = json.loads((out / "run_settings.json").read_text())
    assert settings["hook_name"] == "blocks.1.hook_resid_post" and settings["features"] == FEATURES
    assert settings["source"]["identity"].startswith("sha256:")


def test_bad_input_gives_clear_errors(index_path, tmp_path, caplog) -> None:
    def run(*args: str) -> str:
        caplog.clear()
        assert cli.main(["export", "neuronpedia", *args]) == 2
        return caplog.text

    out = str(tmp_path / "np")
    assert "no feature index at" in run("--index", str(tmp_path / "missing.db"), "--out", out)
    assert not (tmp_path / "np").exists()  # nothing written for a missing index
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "cannot write the export to" in run(
        "--index", str(index_path), "--out", str(blocker / "np")
    )
    assert "is a file" in run("--index", str(index_path), "--out", str(blocker))
    assert "not a Neuronpedia id" in run(
        "--index", str(index_path), "--out", out, "--source-id", "my set"
    )
    assert "batch_size must be" in run(
        "--index", str(index_path), "--out", out, "--batch-size", "0"
    )
    assert cli.main(["export", "neuronpedia", "--index", str(index_path), "--out", out]) == 0
    assert "already holds 1 batch" in run("--index", str(index_path), "--out", out)
    not_index = tmp_path / "junk.db"
    not_index.write_bytes(b"not sqlite at all" * 100)
    assert "is not a saescope feature index" in run("--index", str(not_index), "--out", out)
    with pytest.raises(SaescopeError, match="model_id"):
        NeuronpediaConfig(model_id="gemma 3")
