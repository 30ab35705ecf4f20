"""A transcoder spliced in as the MLP: exact ones change no loss, the CLI scores them."""

import json

import pytest
import torch
from transcoders import (
    SITE_IN,
    SITE_OUT,
    exact_transcoder,
    linear_mlp_model,
    save_linear_mlp_model,
)

from saescope import cli
from saescope.data import ContextConfig, keep_positions, pack_contexts
from saescope.errors import SaescopeError
from saescope.evaluate import evaluate, spliced_stats
from saescope.models import run_with_cache
from saescope.sae import save_sae


def _batches(model, corpus):
    ids = torch.stack(list(pack_contexts(corpus, model.tokenizer, ContextConfig(16)))[:8])
    return list(ids.split(4)), lambda x: keep_positions(x, model.tokenizer)


@pytest.mark.parametrize("skip", [False, True])
def test_exact_transcoder_spliced_loss_equals_the_clean_loss(tokenizer, corpus, skip) -> None:
    model = linear_mlp_model(tokenizer)
    batches, keep = _batches(model, corpus)
    tc = exact_transcoder(model, skip=skip)
    stats = spliced_stats(model, tc, SITE_IN, batches, keep)
    assert stats.delta_loss == pytest.approx(0.0, abs=1e-5)
    assert stats.kl == pytest.approx(0.0, abs=1e-6)
    assert stats.loss_recovered == pytest.approx(1.0, abs=1e-4)
    # zero-ablating the MLP output changes the loss: the test would pass vacuously otherwise
    assert stats.ce_zero is not None and abs(stats.ce_zero - stats.ce_clean) > 1e-3


def test_broken_transcoder_loses_loss_and_fvu_is_against_the_output(tokenizer, corpus) -> None:
    model = linear_mlp_model(tokenizer)
    batches, _ = _batches(model, corpus)
    tc = exact_transcoder(model)
    with torch.no_grad():
        tc.W_dec.mul_(0.5)
    pairs = []
    for ids in batches:
        acts = run_with_cache(model, ids, [SITE_IN, SITE_OUT])
        pairs.append(
            (acts[SITE_IN].reshape(-1, 64).clone(), acts[SITE_OUT].reshape(-1, 64).clone())
        )
    result = evaluate(tc, pairs, model, batches)
    assert result.site == SITE_IN and result.site_out == SITE_OUT
    assert result.spliced is not None and result.spliced.kl > 1e-5
    # FVU by hand: against the MLP output rows, not the input rows
    x = torch.cat([p[0] for p in pairs])
    y = torch.cat([p[1] for p in pairs])
    with torch.no_grad():
        sse = (tc(x).x_hat - y).double().pow(2).sum()
    fvu = float(sse / (y.double() - y.double().mean(0)).pow(2).sum())
    assert result.reconstruction.fvu == pytest.approx(fvu, rel=1e-6)


def test_transcoder_writing_before_it_reads_is_refused(tokenizer, corpus) -> None:
    model = linear_mlp_model(tokenizer)
    batches, keep = _batches(model, corpus)
    tc = exact_transcoder(model)
    with pytest.raises(SaescopeError, match="output site must come after its input"):
        spliced_stats(model, tc, SITE_IN, batches, keep, site_out="layers.1.attn_out")


def test_transcoder_fed_plain_rows_is_refused(tokenizer) -> None:
    from saescope.evaluate import reconstruction_stats

    tc = exact_transcoder(linear_mlp_model(tokenizer))
    with pytest.raises(SaescopeError, match=r"\(input, output\) row pairs"):
        reconstruction_stats(tc, [torch.randn(4, 64)])


def test_eval_cli_scores_a_transcoder_live(tmp_path, tokenizer) -> None:
    save_linear_mlp_model(tmp_path / "model")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Bridge number {i} spans a river." for i in range(60)))
    tc = exact_transcoder(linear_mlp_model(tokenizer), skip=True)
    save_sae(tc, tmp_path / "tc")
    argv = ["eval", "--sae", str(tmp_path / "tc"), "--out", str(tmp_path / "report")]
    argv += ["--model", str(tmp_path / "model"), "--dtype", "fp32", "--dataset", str(corpus)]
    argv += ["--context-size", "16", "--loss-tokens", "64"]
    assert cli.main(argv) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    (entry,) = metrics["saes"].values()
    assert entry["site"] == SITE_IN and entry["site_out"] == SITE_OUT
    assert entry["reconstruction"]["fvu"] < 1e-8
    assert abs(entry["spliced"]["delta_loss"]) < 1e-5
