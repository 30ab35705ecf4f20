"""The feature commands end to end on a tiny saved model: index -> show/search/features/dashboard,
and families across two SAE widths."""

from __future__ import annotations

import json
import statistics

import pytest
from tiny_models import save_tiny_model

from saescope import cli
from saescope.cli.render import PIPED_WIDTH
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


def test_features_rank_relative_to_the_index_mean(setup) -> None:
    """--rank relative orders a token's features by activation / the median activation of the
    feature's sampled contexts, read back from the index file as ``show`` lists them."""
    from saescope.interpret.active import active_features, relative_to, typical_activations
    from saescope.interpret.sources import sae_source
    from saescope.models import load_model

    root, index, _ = setup
    model = load_model(str(root / "model"), dtype="fp32")
    source = sae_source(root / "narrow")
    prompt = "Bridge number 3 spans a river in town"
    with FeatureIndex(index) as db:
        samples = {
            f: [e.activation for _, e in db.feature(f).samples] for f in range(db.n_features)
        }
        typical = {f: statistics.median(a) if a else None for f, a in samples.items()}
        rank = relative_to(typical_activations(db))
    by_activation = active_features(model, source, prompt, k=32)
    by_relative = active_features(model, source, prompt, k=32, rank=rank)
    reordered = 0
    for plain, relative in zip(by_activation, by_relative, strict=True):
        assert sorted(plain.features) == sorted(relative.features)  # the same firing features
        assert [v for _, v in plain.features] == plain.scores  # default: ranked by activation
        ratio = {f: v / typical[f] if typical[f] else float("inf") for f, v in plain.features}
        want = sorted(ratio, key=lambda f: -ratio[f])
        assert [f for f, _ in relative.features] == want
        assert relative.scores == pytest.approx([ratio[f] for f in want], rel=1e-5)
        reordered += [f for f, _ in plain.features] != want
    assert reordered  # the ranking is not the activation one under another name


def test_features_table_shows_density_flags_dense_and_ranks(setup, capsys, caplog) -> None:
    root, index, common = setup
    argv = ["features", "--sae", str(root / "narrow"), "--prompt", "Bridge number 3 spans",
            "--index", str(index), "--top", "4", *common[:4]]  # fmt: skip
    with FeatureIndex(index) as db:
        density = {f: db.feature(f).density for f in range(db.n_features)}
    assert any(d > 0.10 for d in density.values())  # the tiny SAE has dense features
    assert cli.main([*argv, "--rank", "relative"]) == 0
    out = capsys.readouterr().out
    assert "by relative" in out and "density" in out and "dense" in out
    shown = [f for f, d in density.items() if f"{d:.2%} dense" in out]
    assert shown and all(density[f] > 0.10 for f in shown)
    no_index = [a for a in argv if a not in ("--index", str(index))]
    assert cli.main([*no_index, "--rank", "relative"]) == 2
    assert "--rank relative needs --index" in caplog.text
    other = [*argv[:2], str(root / "wide"), *argv[3:]]  # the wide SAE, the narrow one's index
    assert cli.main(other) == 2
    assert "give the index built from it" in caplog.text


def test_plain_output_marks_the_peak_and_keeps_every_description(
    setup, capsys, monkeypatch
) -> None:
    """Piped (captured) output has no colour: the peak token is marked in text; with COLUMNS
    unset tables are not squeezed to 80 columns, and a narrow COLUMNS folds instead of cutting."""
    root, index, common = setup
    monkeypatch.delenv("COLUMNS", raising=False)
    with FeatureIndex(index) as db:
        busiest = max(range(db.n_features), key=lambda f: db.feature(f).fires)
        top = db.feature(busiest).top[0]
        described = db.describe(list(range(db.n_features)))
    peak = top.tokens[top.focus].replace("\n", "⏎")
    capsys.readouterr()
    assert cli.main(["show", "--index", str(index), str(busiest)]) == 0
    shown = capsys.readouterr().out
    assert f"«{peak}»" in shown
    assert max(len(line) for line in shown.splitlines()) == PIPED_WIDTH  # not rich's 80
    argv = ["features", "--sae", str(root / "narrow"), "--prompt", "Bridge number 3 spans a river",
            "--index", str(index), "--top", "4", *common[:4]]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    assert len([d for d in described.values() if d in out]) >= 4  # whole, on one line each
    monkeypatch.setenv("COLUMNS", "50")
    assert cli.main(argv) == 0
    narrow = capsys.readouterr().out
    assert "…" not in narrow and max(len(line) for line in narrow.splitlines()) <= 50
    site = ["--site", SITE, "--model", str(root / "model"), "--dtype", "fp32"]
    argv = ["neurons", *site, "--unit", "3", "--contexts", "2", "--tokens", "300",
            "--dataset", common[-1]]  # fmt: skip
    assert cli.main(argv) == 0
    assert "«" in capsys.readouterr().out


def test_neurons_on_a_prompt_show_activation_and_contribution(setup, capsys) -> None:
    *_, common = setup
    argv = ["neurons", "--site", SITE, "--prompt", "Bridge number 3 spans", "--top", "5",
            *common[:4]]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "by contribution" in out and "activation" in out and "contribution" in out
    assert cli.main([*argv, "--rank", "activation"]) == 0
    assert "by activation" in capsys.readouterr().out
