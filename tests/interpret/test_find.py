"""Search by example on a tiny model with a planted feature: an SAE whose one encoder column
points along the residual of one token (' pasta', 0.4% of the corpus) fires on that token only,
an always-on feature fires everywhere, more strongly, and random directions fire on ~1% of
tokens each."""

from __future__ import annotations

import pytest
import torch
from tiny_models import COOKING, cooking_tokenizer, tiny_hf_model

from saescope import cli
from saescope.data import ContextConfig, Corpus, keep_positions, pack_contexts
from saescope.errors import SaescopeError
from saescope.interpret.build import index_features
from saescope.interpret.collect import CollectConfig
from saescope.interpret.find import search_by_example
from saescope.interpret.query import FeatureIndex
from saescope.interpret.sources import sae_source
from saescope.models import load_model, run_with_cache
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"
CONTEXT = ContextConfig(context_size=16)
DOCS = [COOKING["pasta"]] * 3 + [COOKING["cookie"], COOKING["war"], COOKING["chef"]] * 20
PLANTED, ALWAYS, DENSE = 3, 5, 7
TEXT_WITH = "She tasted the pasta in the garden"
TEXTS = [TEXT_WITH, "The cook's pasta was sweet", "A pasta jar sat by the window"]
TEXT_WITHOUT = "The army left the kitchen"


def planted_sae(model, corpus, token_id: int, seed: int = 0):
    """A ReLU SAE (d_sae 16) at SITE: feature PLANTED fires only on ``token_id`` (its encoder
    column is that token's mean residual direction, its bias a threshold just above every other
    token's projection), ALWAYS fires 10 on every token, DENSE fires 50x more strongly than
    PLANTED along the same direction on the 12% of tokens furthest along it, and the rest are
    random directions firing on about 1% of tokens each."""
    ids = torch.stack(list(pack_contexts(corpus, model.tokenizer, CONTEXT)))  # (C, T)
    x = run_with_cache(model, ids, [SITE])[SITE].float()  # (C, T, d)
    keep = keep_positions(ids, model.tokenizer)
    x, tokens = x[keep], ids[keep]  # (N, d), (N,)
    mu = x.mean(0)
    u = (x[tokens == token_id] - mu).mean(0)
    u = u / u.norm()
    proj = (x - mu) @ u  # (N,)
    on, off = proj[tokens == token_id].min(), proj[tokens != token_id].max()
    assert on > off, "the token's residuals are not separable along their mean direction"
    cfg = SAEConfig(
        d_in=x.shape[1], d_sae=16, architecture="relu",
        metadata=SAEMetadata(hook_name=SITE, model_name=model.name),
    )  # fmt: skip
    sae = build_sae(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = torch.randn(x.shape[1], 16, generator=g)
        w = w / w.norm(dim=0)
        pre = (x - mu) @ w  # (N, 16)
        sae.b_dec.zero_()
        sae.W_enc.copy_(w)
        sae.b_enc.copy_(-(mu @ w) - pre.quantile(0.99, dim=0))
        sae.W_enc[:, PLANTED] = u
        sae.b_enc[PLANTED] = -(mu @ u) - off - (on - off) / 20
        sae.W_enc[:, ALWAYS] = 0.0
        sae.b_enc[ALWAYS] = 10.0
        sae.W_enc[:, DENSE] = 50 * u  # the planted direction, firing on the top 12% of tokens
        sae.b_enc[DENSE] = -50 * (mu @ u + proj.quantile(0.88))
    return sae


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("find")
    tiny_hf_model("llama").save_pretrained(root / "model")
    cooking_tokenizer().save_pretrained(root / "model")
    model = load_model(str(root / "model"), dtype="fp32")
    corpus = Corpus("cooking", DOCS)
    token = model.tokenizer.convert_tokens_to_ids("Ġpasta")
    save_sae(planted_sae(model, corpus, token), root / "sae")
    save_sae(planted_sae(model, corpus, token, seed=1), root / "other")
    index = index_features(
        root / "index.db", sae_dir=root / "sae", model=model, corpus=corpus, context=CONTEXT,
        tokens=100_000, collect=CollectConfig(top=5, samples=8, before=4, after=2),
        progress=False,
    )  # fmt: skip
    return model, root, index


def test_the_planted_feature_ranks_first_and_the_always_on_one_is_down_ranked(planted):
    model, root, path = planted
    with FeatureIndex(path) as index:
        assert index.feature(PLANTED).peaks == [(" pasta", 3)]
        assert index.feature(ALWAYS).density == 1.0
        hits = search_by_example(model, sae_source(root / "sae"), index, TEXTS)
        assert hits[0].feature == PLANTED and hits[0].tokens[0][0] == " pasta"
        assert hits[0].texts == 3 and hits[0].rate > 0.5 and hits[0].contrast is None
        assert ALWAYS not in [h.feature for h in hits]  # it fires on them as it always does
        dense = next(h for h in hits if h.feature == DENSE)
        assert dense.dense and dense.tokens[0][0] == " pasta"
        assert dense.tokens[0][1] > 10 * hits[0].tokens[0][1]
        assert all(not h.dense for h in hits[: hits.index(dense)])  # larger, yet ranked last
        assert [h.score for h in hits if not h.dense] == sorted(
            (h.score for h in hits if not h.dense), reverse=True
        )
        # the same text as contrast: nothing fires more on the texts than on it
        assert (
            search_by_example(model, sae_source(root / "sae"), index, [TEXT_WITH], [TEXT_WITH])
            == []
        )
        # a contrast without the token leaves it first
        hits = search_by_example(
            model, sae_source(root / "sae"), index, [*TEXTS, TEXT_WITHOUT], [TEXT_WITHOUT]
        )
        assert hits[0].feature == PLANTED and hits[0].texts == 3
        assert hits[0].contrast == 0.0


def test_an_index_of_another_sae_or_model_is_refused(planted):
    model, root, path = planted
    with FeatureIndex(path) as index:
        with pytest.raises(SaescopeError, match="pass the SAE the index was built from"):
            search_by_example(model, sae_source(root / "other"), index, [TEXT_WITH])
        with pytest.raises(SaescopeError, match="no tokens"):
            search_by_example(model, sae_source(root / "sae"), index, [" "])
        model.name = "another-model"
        try:
            with pytest.raises(SaescopeError, match="built on the model"):
                search_by_example(model, sae_source(root / "sae"), index, [TEXT_WITH])
        finally:
            model.name = str(root / "model")


def test_the_search_command_by_example_and_by_word(planted, capsys, caplog, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rows on one line each
    _, root, path = planted
    argv = ["search", "--index", str(path), "--sae", str(root / "sae"), "--dtype", "fp32"]
    assert cli.main([*argv, *(a for t in TEXTS for a in ("--text", t))]) == 0
    out = capsys.readouterr().out
    rows = [line.split("│") for line in out.splitlines() if "│" in line]
    assert rows[0][1].strip() == str(PLANTED)  # the first row after the header
    assert "[dense 12%]" in out  # DENSE is shown, flagged
    assert cli.main(["search", "--index", str(path), "pasta"]) == 0
    out = capsys.readouterr().out
    assert "peak" in out and str(PLANTED) in out
    assert cli.main([*argv, "--contrast", TEXT_WITHOUT]) == 2
    assert "--contrast" in caplog.text
    assert cli.main(["search", "--index", str(path)]) == 2
    assert cli.main(["search", "--index", str(path), "--text", TEXT_WITH]) == 2  # no --sae
