"""The feature index: streaming statistics against brute force, the SQLite round trip, resume."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch

from saescope.data import ContextConfig, keep_positions, pack_contexts
from saescope.errors import SaescopeError
from saescope.interpret.batches import live_batches
from saescope.interpret.build import index_features
from saescope.interpret.collect import PAD_TOKEN, CollectConfig, FeatureCollector
from saescope.interpret.index import partial_dir
from saescope.interpret.query import FeatureIndex
from saescope.interpret.sources import neuron_source, sae_source
from saescope.models import run_with_cache
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"
CONTEXT = ContextConfig(context_size=32)
CFG = CollectConfig(top=5, samples=8, zeros=2, before=4, after=2, zero_pool=16)


@pytest.fixture
def sae_dir(tmp_path, model):
    cfg = SAEConfig(
        d_in=64,
        d_sae=48,
        architecture="topk",
        k=6,
        metadata=SAEMetadata(hook_name=SITE, model_name=model.name),
    )
    path = tmp_path / "sae"
    save_sae(build_sae(cfg, seed=3), path)
    return path


def brute_force(model, source, corpus):
    """Dense features (contexts, T, F) of every context, 0 at excluded positions."""
    ids = torch.stack(list(pack_contexts(corpus, model.tokenizer, CONTEXT)))  # (C, T)
    acts = run_with_cache(model, ids, [source.site])[source.site]  # (C, T, d)
    C, T, d = acts.shape
    dense = source.encode(acts.reshape(-1, d)).to_dense().reshape(C, T, -1)
    keep = keep_positions(ids, model.tokenizer)
    return ids, dense * keep[..., None]


def collect(model, source, corpus, cfg=CFG, per_batch=3):
    collector = FeatureCollector(source.n_features, cfg)
    for batch, _ in live_batches(model, source.site, corpus, CONTEXT, per_batch):
        collector.update(batch, source.encode(batch.acts))
    return collector


@pytest.mark.parametrize("kind", ["sae", "neurons"])
def test_streaming_statistics_equal_brute_force(kind, model, corpus, sae_dir) -> None:
    # an SAE's sparse code and raw neurons (half positive) take the two lookup paths
    source = sae_source(sae_dir) if kind == "sae" else neuron_source(model, "layers.1.mlp_act")
    ids, dense = brute_force(model, source, corpus)
    c = collect(model, source, corpus)
    fired = dense > 0
    assert c.tokens_seen == int(keep_positions(ids, model.tokenizer).sum())
    assert torch.equal(c.fires, fired.sum((0, 1)))
    torch.testing.assert_close(c.act_sum.float(), dense.sum((0, 1)), rtol=1e-5, atol=1e-4)
    assert torch.equal(c.act_max, dense.amax((0, 1)))
    assert torch.equal(c.hist.sum(1), c.fires)

    ctx_max = dense.amax(1)  # (C, F): examples are per (feature, context)
    pad = (CFG.before, CFG.after)
    ids_pad = torch.nn.functional.pad(ids, pad, value=PAD_TOKEN)  # window w of pos = pos + w
    dense_pad = torch.nn.functional.pad(dense.transpose(1, 2), pad)  # (C, F, T + W - 1)
    for f in range(source.n_features):
        firing = int((ctx_max[:, f] > 0).sum())
        expected = ctx_max[:, f].topk(min(CFG.top, firing)).values
        slots = torch.nonzero(c.top.score[f] > float("-inf")).flatten()
        assert torch.equal(c.top.value[f, slots].sort(descending=True).values, expected), f
        for s in slots.tolist():  # each window holds the tokens and this feature's values
            ctx, pos = int(c.top.context[f, s]), int(c.top.position[f, s])
            assert dense[ctx, pos, f] == c.top.value[f, s] == ctx_max[ctx, f]
            assert torch.equal(c.top.tokens[f, s].long(), ids_pad[ctx, pos : pos + CFG.window])
            assert torch.equal(c.top.acts[f, s], dense_pad[ctx, f, pos : pos + CFG.window])


def test_samples_are_firing_contexts_across_the_range(model, corpus, sae_dir) -> None:
    source = sae_source(sae_dir)
    _, dense = brute_force(model, source, corpus)
    c = collect(model, source, corpus, CollectConfig(samples=40, top=5))
    ctx_max = dense.amax(1)
    for f in range(source.n_features):
        valid = c.sample.score[f] > float("-inf")
        contexts = c.sample.context[f][valid]
        assert len(contexts) == min(40, int((ctx_max[:, f] > 0).sum()))
        assert len(set(contexts.tolist())) == len(contexts)  # each context once
        assert torch.equal(c.sample.value[f][valid], ctx_max[contexts, f])
    # A uniform sample spans the distribution: every quartile of a busy feature is represented.
    busy = int((ctx_max > 0).sum(0).argmax())
    values = c.sample.value[busy][c.sample.score[busy] > float("-inf")]
    quartiles = ctx_max[:, busy][ctx_max[:, busy] > 0].quantile(torch.tensor([0.25, 0.5, 0.75]))
    assert len(np.unique(np.searchsorted(quartiles.numpy(), values.numpy()))) == 4


def test_silent_examples_do_not_fire(model, corpus, sae_dir) -> None:
    source = sae_source(sae_dir)
    ids, dense = brute_force(model, source, corpus)
    c = collect(model, source, corpus)
    for f in range(source.n_features):
        for slot in c.zero_examples(f):
            ctx = int(c.pool_context[slot])
            window = c.pool_tokens[slot]
            # find where the window sits in its context and check the feature is 0 there
            t = ids[ctx].tolist()
            inner = [int(x) for x in window if x != PAD_TOKEN]
            starts = [i for i in range(len(t)) if t[i : i + len(inner)] == inner]
            assert any(float(dense[ctx, s : s + len(inner), f].max()) == 0 for s in starts)


def build(tmp_path, model, corpus, sae_dir, name="index.db", **kwargs):
    return index_features(
        tmp_path / name,
        sae_dir=sae_dir,
        model=model,
        corpus=corpus,
        context=CONTEXT,
        tokens=100_000,
        collect=CFG,
        progress=False,
        **kwargs,
    )


def test_index_round_trip(tmp_path, model, corpus, sae_dir) -> None:
    path = build(tmp_path, model, corpus, sae_dir)
    c = collect(model, sae_source(sae_dir), corpus, per_batch=16)
    with FeatureIndex(path) as index:
        assert index.n_features == 48 and index.meta["site"] == SITE
        assert index.meta["source"]["identity"].startswith("sha256:")
        assert index.meta["model"] == model.name and index.meta["dataset"] == "test"
        f = int(c.fires.argmax())
        record = index.feature(f)
        assert record.fires == int(c.fires[f])
        assert record.density == pytest.approx(int(c.fires[f]) / c.tokens_seen)
        expected = c.top.value[f][c.top.score[f] > float("-inf")].sort(descending=True).values
        assert [e.activation for e in record.top] == pytest.approx(expected.tolist())
        top = record.top[0]
        assert top.activations[top.focus] == pytest.approx(top.activation, rel=1e-3)
        assert len(record.promoted) == len(record.suppressed) == 10
        assert record.promoted[0][1] >= record.promoted[-1][1] > record.suppressed[0][1]
        assert len(record.neighbours) == 10 and record.neighbours[0][1] >= record.neighbours[1][1]
        assert {q for q, _ in record.samples} <= {0, 1, 2, 3}
        assert sum(record.histogram) == record.fires
        peak_token = top.tokens[top.focus]
        assert f in [h.feature for h in index.search(peak_token.strip() or peak_token)]
        with pytest.raises(SaescopeError, match="does not exist"):
            index.feature(48)
        for chosen in index.consistent_features(3, density=(0, 1), min_letters=1):
            peaks = [e.tokens[e.focus] for e in index.feature(chosen).top]
            assert max(peaks.count(p) for p in peaks) >= len(peaks) / 2
    db = sqlite3.connect(path)  # plain SQL works too
    assert db.execute("SELECT count(*) FROM features").fetchone()[0] == 48


def test_an_interrupted_build_resumes_to_the_same_index(tmp_path, model, corpus, sae_dir) -> None:
    whole = build(tmp_path, model, corpus, sae_dir, "whole.db")

    calls = 0

    class Killed(Exception):
        pass

    real_update = FeatureCollector.update

    def dying_update(self, batch, latents):
        nonlocal calls
        calls += 1
        if calls == 4:
            raise Killed
        real_update(self, batch, latents)

    FeatureCollector.update = dying_update  # type: ignore[method-assign]
    try:
        with pytest.raises(Killed):
            index_features(
                tmp_path / "resumed.db", sae_dir=sae_dir, model=model, corpus=corpus,
                context=CONTEXT, tokens=100_000, collect=CFG, progress=False,
                checkpoint_seconds=0,
            )  # fmt: skip
    finally:
        FeatureCollector.update = real_update  # type: ignore[method-assign]
    assert (partial_dir(tmp_path / "resumed.db") / "state.safetensors").exists()
    with pytest.raises(SaescopeError, match="--resume"):
        build(tmp_path, model, corpus, sae_dir, "resumed.db")
    resumed = build(tmp_path, model, corpus, sae_dir, "resumed.db", resume=True)
    assert not partial_dir(resumed).exists()
    a, b = sqlite3.connect(whole), sqlite3.connect(resumed)
    for table in ("features", "examples", "logits", "neighbours"):
        assert (
            a.execute(f"SELECT * FROM {table}").fetchall()
            == b.execute(f"SELECT * FROM {table}").fetchall()
        ), table


def test_neuron_index_and_bad_inputs(tmp_path, model, corpus, sae_dir) -> None:
    path = index_features(
        tmp_path / "neurons.db", site="layers.1.mlp_act", model=model, corpus=corpus,
        context=CONTEXT, tokens=2_000, collect=CFG, progress=False,
    )  # fmt: skip
    with FeatureIndex(path) as index:
        assert index.n_features == neuron_source(model, "layers.1.mlp_act").n_features == 96
        record = index.feature(int(np.argmax([index.feature(i).fires for i in range(96)])))
        assert record.top and all(e.activation > 0 for e in record.top)
    with pytest.raises(SaescopeError, match="exists"):
        build(tmp_path, model, corpus, sae_dir, "neurons.db")
    with pytest.raises(SaescopeError, match="no feature index"):
        FeatureIndex(tmp_path / "missing.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(SaescopeError, match="not a saescope feature index"):
        FeatureIndex(tmp_path / "junk.db")
    with pytest.raises(SaescopeError, match="empty"):
        from saescope.data import Corpus

        build(tmp_path, model, Corpus("empty", [" "]), sae_dir, "empty.db")


def test_a_second_build_of_the_same_index_is_refused(tmp_path, model, corpus, sae_dir) -> None:
    """Two builds (two --resume, say) of one index would both write its partial state."""
    from saescope._files import exclusive

    with exclusive(tmp_path, "the index", name=".index.db.lock"):
        with pytest.raises(SaescopeError, match="another saescope process"):
            build(tmp_path, model, corpus, sae_dir)
        other = build(tmp_path, model, corpus, sae_dir, name="other.db")  # another index: fine
    assert other.exists()


@pytest.mark.parametrize("bad", [{"top": 0}, {"top": -1}, {"samples": -1}, {"zeros": 100}])
def test_collect_config_refuses_sizes_the_collector_cannot_hold(bad) -> None:
    with pytest.raises(SaescopeError, match="must be"):
        CollectConfig(**bad)
