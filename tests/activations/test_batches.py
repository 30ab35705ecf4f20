import pytest
import torch

from saescope.activations import capture, stream_activations
from saescope.data import ContextConfig, keep_positions, pack_contexts
from saescope.errors import SaescopeError
from saescope.models import run_with_cache

CONTEXT = ContextConfig(context_size=16, seed=0)


@pytest.fixture
def cache(model, corpus, tmp_path):
    return capture(
        model,
        ["layers.1.resid_post"],
        tmp_path / "c",
        tokens=500,
        corpus=corpus,
        context=CONTEXT,
        dtype="float32",
        batch_size=4,
        shard_rows=60,
        progress=False,
    )


def _rows(batches) -> list[tuple]:
    return sorted(tuple(r.tolist()) for b in batches for r in b)


def test_each_row_once_per_epoch_shuffled(cache) -> None:
    everything = cache.rows(torch.arange(len(cache)))
    batches = list(cache.batches(32, shuffle=True, seed=1, buffer_shards=2))
    assert all(len(b) == 32 for b in batches[:-1]) and sum(map(len, batches)) == 500
    assert _rows(batches) == _rows([everything])
    assert not torch.equal(torch.cat(batches), everything)  # order changed
    two = list(cache.batches(32, seed=1, buffer_shards=2, epochs=2, drop_last=True))
    assert len(two) == 2 * (500 // 32) or len(two) == 2 * (500 // 32) - 1
    unshuffled = torch.cat(list(cache.batches(50, shuffle=False)))
    assert torch.equal(unshuffled, everything)


def test_ranks_read_disjoint_shares(cache) -> None:
    shares = [_rows(cache.batches(16, rank=r, world_size=2, seed=3)) for r in range(2)]
    assert sorted(shares[0] + shares[1]) == _rows([cache.rows(torch.arange(len(cache)))])


def test_site_must_exist_and_be_named_when_ambiguous(model, corpus, tmp_path, cache) -> None:
    with pytest.raises(SaescopeError, match="not in this cache"):
        cache.rows([0], "layers.0.resid_post")
    assert cache.rows([0], "blocks.1.hook_resid_post").shape == (1, 64)
    two = capture(
        model,
        ["layers.0.mlp_out", "layers.1.mlp_act"],
        tmp_path / "two",
        tokens=50,
        corpus=corpus,
        context=CONTEXT,
        progress=False,
    )
    with pytest.raises(SaescopeError, match="several sites"):
        next(two.batches(8))
    assert next(two.batches(8, "layers.1.mlp_act")).shape == (8, 96)


def test_live_stream_yields_the_same_rows_as_the_cache(model, corpus) -> None:
    live = list(
        stream_activations(
            model,
            "layers.1.resid_post",
            16,
            corpus,
            CONTEXT,
            contexts_per_forward=4,
            buffer_rows=64,
        )
    )
    contexts = torch.stack(list(pack_contexts(corpus, model.tokenizer, CONTEXT)))
    keep = keep_positions(contexts, model.tokenizer)
    everything = run_with_cache(model, contexts, ["layers.1.resid_post"])["layers.1.resid_post"]
    assert _rows(live) == _rows([everything[keep]])
    assert all(b.shape == (16, 64) for b in live[:-1])
