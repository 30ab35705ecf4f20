"""A saescope-trained JumpReLU SAE written in the Gemma Scope 2 layout, loaded back, and used
end to end on a tiny model (eval's spliced loss, the index) gives the original's numbers."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_models import TEXT, save_tiny_model

from saescope import cli
from saescope.interpret.query import FeatureIndex
from saescope.sae import load_sae
from saescope.sae.formats import save_gemma_scope_2


def _close(a: object, b: object, path: str = "") -> None:
    """Equal JSON trees; floats to 1e-4 relative (the same maths in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), path
        for key in set(a) - {"path"}:  # where each was read from differs, by design
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) or (
            math.isnan(a) and math.isnan(b)
        ), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    model_dir = root / "model"
    save_tiny_model(model_dir, "llama")
    corpus = root / "corpus.txt"
    lines = TEXT.splitlines()
    corpus.write_text("\n\n".join(f"{lines[i % 4]} Item {i}." for i in range(300)))
    cache = root / "cache"
    common = ["--model", str(model_dir), "--dtype", "fp32"]
    capture = ["capture", *common, "--site", "layers.1.resid_post", "--tokens", "1024"]
    capture += ["--out", str(cache), "--dataset", str(corpus), "--context-size", "32"]
    capture += ["--shard-rows", "256"]
    assert cli.main(capture) == 0
    run = root / "run"
    train = ["train", "--acts", str(cache), "--site", "layers.1.resid_post", "--out", str(run)]
    train += ["--arch", "jumprelu", "--width", "96", "--batch-size", "64", "--epochs", "2"]
    train += ["--holdout", "128"]
    assert cli.main(train) == 0
    [sae_dir] = [p for p in run.iterdir() if (p / "cfg.json").exists()]
    gs2 = root / "gemma-scope-2" / "resid_post" / "layer_1_width_96_l0_small"
    save_gemma_scope_2(load_sae(sae_dir), gs2)
    return root, common, cache, sae_dir, gs2


def test_loaded_back_encodes_identically(trained) -> None:
    _, _, _, sae_dir, gs2 = trained
    original, back = load_sae(sae_dir), load_sae(gs2)
    assert original.cfg.apply_b_dec_to_input and not back.cfg.apply_b_dec_to_input  # folded
    x = torch.randn(1000, 64)
    # The folded bias computes x W + (b_enc - b_dec W) instead of (x - b_dec) W + b_enc: the
    # same sum in another order, so equal to float32 rounding of the terms, not bit for bit.
    with torch.no_grad():
        torch.testing.assert_close(
            back.encode_dense(x), original.encode_dense(x), rtol=1e-4, atol=1e-4
        )
        torch.testing.assert_close(back(x).x_hat, original(x).x_hat, rtol=1e-4, atol=1e-4)
    assert back.cfg.metadata.model_name == original.cfg.metadata.model_name
    assert back.cfg.metadata.site == "layers.1.resid_post"


def test_eval_gives_the_same_numbers(trained) -> None:
    root, common, cache, sae_dir, gs2 = trained
    reports = {}
    for name, path in (("original", sae_dir), ("gemma-scope-2", gs2)):
        out = root / f"report-{name}"
        argv = ["eval", "--sae", str(path), "--acts", str(cache), *common, "--tokens", "256"]
        argv += ["--loss-tokens", "128", "--context-size", "32", "--out", str(out)]
        assert cli.main(argv) == 0
        [metrics] = json.loads((out / "metrics.json").read_text())["saes"].values()
        reports[name] = metrics
    spliced = reports["original"]["spliced"]
    assert spliced["ce_spliced"] > 0 and spliced["ce_clean"] > 0  # a random model: either order
    _close(reports["gemma-scope-2"], reports["original"])


def test_index_gives_the_same_features(trained) -> None:
    root, common, cache, sae_dir, gs2 = trained
    records = {}
    for name, path in (("original", sae_dir), ("gemma-scope-2", gs2)):
        db = root / f"{name}.db"
        argv = ["index", "--sae", str(path), "--acts", str(cache), *common, "--tokens", "512"]
        argv += ["--top", "5", "--samples", "3", "--out", str(db)]
        assert cli.main(argv) == 0
        with FeatureIndex(db) as index:
            records[name] = [index.feature(i) for i in range(index.n_features)]
    fired = 0
    for a, b in zip(records["original"], records["gemma-scope-2"], strict=True):
        assert a.fires == b.fires and math.isclose(
            a.max_activation, b.max_activation, rel_tol=1e-4, abs_tol=1e-6
        )
        assert [e.tokens for e in a.top] == [e.tokens for e in b.top]
        assert [t for t, _ in a.promoted] == [t for t, _ in b.promoted]
        assert [v for _, v in a.promoted] == pytest.approx([v for _, v in b.promoted], rel=1e-4)
        fired += a.fires > 0
    assert fired > 0
