"""The feature commands end to end on a tiny saved model: index -> show/search/features/dashboard,
and families across two SAE widths."""

from __future__ import annotations

import json

import pytest
from tiny_models import save_tiny_model

from saescope import cli
from saescope.interpret.query import FeatureIndex
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.mlp_act"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("interpret-cli")
    save_tiny_model(root / "model", "llama")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"text": f"Bridge number {i} spans a river in town."}) for i in range(300)
        )
    )
    for name, width in (("narrow", 32), ("wide", 96)):
        cfg = SAEConfig(
            d_in=96, d_sae=width, architecture="topk", k=4, metadata=SAEMetadata(hook_name=SITE)
        )
        save_sae(build_sae(cfg, seed=width), root / name)
    index = root / "index.db"
    common = ["--model", str(root / "model"), "--dtype", "fp32", "--dataset", str(corpus)]
    argv = ["index", "--sae", str(root / "narrow"), "--out", str(index), "--tokens", "2000",
            "--context-size", "32", "--top", "4", *common]  # fmt: skip
    assert cli.main(argv) == 0
    return root, index, common


def test_index_then_show_search_and_dashboard(setup, capsys, caplog) -> None:
    root, index, _ = setup
    with FeatureIndex(index) as db:
        assert db.meta["site"] == SITE and db.meta["tokens"] >= 2000
        assert db.meta["collect"]["top"] == 4
        busiest = max(range(db.n_features), key=lambda f: db.feature(f).fires)
        record = db.feature(busiest)
        assert record.neurons and len(record.top) == 4  # an SAE on neurons lists its neurons
        word = record.top[0].tokens[record.top[0].focus].strip()
    capsys.readouterr()
    assert cli.main(["show", "--index", str(index), str(busiest)]) == 0
    shown = capsys.readouterr().out
    assert f"feature {busiest}" in shown and "top activations" in shown and "promotes" in shown
    assert cli.main(["search", "--index", str(index), word]) == 0
    assert str(busiest) in capsys.readouterr().out
    out = root / "dash"
    assert (
        cli.main(
            ["dashboard", "--index", str(index), "--features", f"{busiest},0", "--out", str(out)]
        )
        == 0
    )
    page = (out / f"feature-{busiest}.html").read_text()
    assert "Top activations" in page and "rgba(255,110,0," in page and "<svg" in page
    assert f'href="feature-{busiest}.html"' in (out / "index.html").read_text()
    assert cli.main(["show", "--index", str(index), "999"]) == 2  # a clear error, not a traceback
    assert "does not exist" in caplog.text


def test_features_on_a_prompt(setup, capsys) -> None:
    root, index, common = setup
    argv = ["features", "--sae", str(root / "narrow"), "--prompt", "Bridge number 3 spans",
            "--index", str(index), "--top", "3", *common[:4]]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Bridge" in out and "×" in out  # each token, its features described by the index
    argv_no_index = [a for a in argv if a not in ("--index", str(index))]
    assert cli.main(argv_no_index) == 0
    assert "→" in capsys.readouterr().out  # described by promoted tokens instead


def test_families_between_widths(setup, capsys) -> None:
    root, *_ = setup
    argv = ["families", "--narrow", str(root / "narrow"), "--wide", str(root / "wide"),
            "--features", "0,1", "--threshold", "0.1"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "split in" in out and "shuffled" in out and "same index" in out
