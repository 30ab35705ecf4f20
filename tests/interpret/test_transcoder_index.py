"""An index of a transcoder's latents: examples from encoding its input site, promoted tokens
from its decoder rows at the output site, and ``features --prompt`` on its latents."""

from __future__ import annotations

import json

import pytest
import torch
from transcoders import SITE_IN, SITE_OUT, exact_transcoder, linear_mlp_model, save_linear_mlp_model

from saescope import cli
from saescope.activations import capture
from saescope.data import ContextConfig, keep_positions, load_corpus, pack_contexts
from saescope.interpret.active import active_features
from saescope.interpret.attribution import logit_attribution
from saescope.interpret.build import index_features
from saescope.interpret.collect import CollectConfig
from saescope.interpret.query import FeatureIndex
from saescope.interpret.sources import sae_source
from saescope.interpret.write import LOGIT_K
from saescope.models import run_with_cache
from saescope.sae import save_sae

CONTEXT = ContextConfig(context_size=16)
COLLECT = CollectConfig(top=4, samples=4, zeros=1, before=3, after=1, zero_pool=8)
PROMPT = "Bridge number 3 spans a river"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("transcoder-index")
    save_linear_mlp_model(root / "model")
    model = linear_mlp_model(tokenizer)
    save_sae(exact_transcoder(model), root / "tc")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"text": f"Bridge number {i} spans a river."}) for i in range(60))
    )
    return root, model, load_corpus(str(corpus))


def _dense_at_input(model, source, corpus):
    """(contexts, T, F): the transcoder's latents from its input site, 0 where excluded."""
    ids = torch.stack(list(pack_contexts(corpus, model.tokenizer, CONTEXT)))  # (C, T)
    acts = run_with_cache(model, ids, [SITE_IN])[SITE_IN]  # (C, T, d)
    C, T, d = acts.shape
    dense = source.encode(acts.reshape(-1, d)).to_dense().reshape(C, T, -1)
    return dense * keep_positions(ids, model.tokenizer)[..., None]


def test_index_reads_the_input_site_and_promotes_through_the_output_rows(setup) -> None:
    root, model, corpus = setup
    path = index_features(
        root / "live.db", sae_dir=root / "tc", model=model, corpus=corpus, context=CONTEXT,
        tokens=100_000, collect=COLLECT, progress=False,  # the whole corpus
    )  # fmt: skip
    source = sae_source(root / "tc")
    assert source.site == SITE_IN and source.site_out == SITE_OUT
    dense = _dense_at_input(model, source, corpus)
    with FeatureIndex(path) as index:
        assert index.meta["site"] == SITE_IN and index.n_features == 128
        assert index.meta["site_out"] == SITE_OUT
        assert index.meta["tokens"] == int((dense.abs().sum(-1) > 0).sum())
        fired = 0
        for f in range(index.n_features):
            record = index.feature(f)
            # the statistics are those of encoding mlp_in (brute force over the same contexts)
            assert record.fires == int((dense[..., f] > 0).sum())
            if not record.fires:
                continue
            fired += 1
            assert record.max_activation == pytest.approx(float(dense[..., f].max()), rel=1e-5)
            assert record.top[0].activation == pytest.approx(record.max_activation, rel=1e-5)
        assert fired > 100  # relu(x_i), relu(-x_i): nearly every latent fires somewhere
        # promoted tokens: the decoder rows (residual directions at mlp_out) through the
        # unembedding, not the encoder columns (mlp_in directions)
        _, pi, _, si = logit_attribution(model, source.sae.W_dec.detach(), LOGIT_K)
        _, enc_pi, _, _ = logit_attribution(model, source.sae.W_enc.detach().t(), LOGIT_K)
        decode = model.tokenizer.decode
        differs = 0
        for f in range(index.n_features):
            record = index.feature(f)
            assert [t for t, _ in record.promoted] == [decode([int(i)]) for i in pi[f]]
            assert [t for t, _ in record.suppressed] == [decode([int(i)]) for i in si[f]]
            differs += [t for t, _ in record.promoted] != [decode([int(i)]) for i in enc_pi[f]]
        assert differs > 64  # the two would give other tokens: the test can tell them apart


def test_index_from_a_cache_of_the_input_site_alone(setup) -> None:
    root, model, corpus = setup
    cache = root / "acts"
    capture(model, [SITE_IN], cache, tokens=300, corpus=corpus, context=CONTEXT, progress=False)
    path = index_features(
        root / "cached.db", sae_dir=root / "tc", model=model, cache_dir=cache, tokens=300,
        collect=COLLECT, progress=False,
    )  # fmt: skip
    with FeatureIndex(path) as index:
        assert index.meta["site"] == SITE_IN and index.meta["tokens"] >= 300
        assert max(index.feature(f).fires for f in range(index.n_features)) > 0


def test_cli_index_and_features_on_a_prompt(setup, capsys) -> None:
    root, model, _ = setup
    index = root / "cli.db"
    common = ["--model", str(root / "model"), "--dtype", "fp32"]
    argv = ["index", "--sae", str(root / "tc"), "--out", str(index), "--tokens", "300",
            "--context-size", "16", "--top", "4", "--dataset", str(root / "corpus.jsonl"),
            *common]  # fmt: skip
    assert cli.main(argv) == 0
    capsys.readouterr()
    argv = ["features", "--sae", str(root / "tc"), "--index", str(index), "--prompt", PROMPT,
            "--top", "2", "--last", *common]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"sae at {SITE_IN}" in out
    (last,) = active_features(model, sae_source(root / "tc"), PROMPT, k=2)[-1:]
    assert last.features  # the latents of the last token, encoded from mlp_in, are listed
    for feature, act in last.features:
        assert str(feature) in out and f"{act:.2f}" in out
