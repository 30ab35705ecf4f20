import json

import pytest
import torch

import saescope.activations.writer as capture_module
from saescope.activations import capture, open_activations
from saescope.data import ContextConfig, Corpus, pack_contexts
from saescope.errors import SaescopeError
from saescope.models import run_with_cache

SITES = ["layers.1.resid_post", "layers.0.mlp_act"]
CONTEXT = ContextConfig(context_size=16, seed=0)


def _capture(model, corpus, out, **kwargs):
    kwargs = {
        "tokens": 300,
        "context": CONTEXT,
        "batch_size": 4,
        "shard_rows": 100,
        "progress": False,
        **kwargs,
    }
    return capture(model, SITES, out, corpus=corpus, **kwargs)


def test_cache_round_trip_is_exact(model, corpus, tmp_path) -> None:
    cache = _capture(model, corpus, tmp_path / "c", dtype="float32")
    assert len(cache) == 300 and cache.manifest.complete
    assert cache.manifest.sites == {"layers.0.mlp_act": 96, "layers.1.resid_post": 64}
    contexts = torch.stack(list(pack_contexts(corpus, model.tokenizer, CONTEXT))[:40])
    keep = ~torch.isin(contexts, torch.tensor([0, 1, 2, 3]))  # the tiny tokenizer's specials
    expected = run_with_cache(model, contexts, SITES)
    for site in SITES:
        want = expected[site][keep][:300]
        got = torch.cat(
            [cache.load_shard(i)[f"acts.{site}"] for i in range(len(cache.manifest.shards))]
        )
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.testing.assert_close(
            cache.rows([299, 0, 150], site), want[[299, 0, 150]], rtol=0, atol=0
        )
    prov = cache.provenance(torch.arange(300))
    assert torch.equal(prov["tokens"].long(), contexts[keep][:300])
    assert torch.equal(contexts[prov["context"], prov["position"].long()], contexts[keep][:300])
    assert not torch.isin(prov["tokens"], torch.tensor([0, 1, 2, 3])).any()  # BOS excluded


def test_bf16_cache_and_keep_special(model, corpus, tmp_path) -> None:
    kept = _capture(model, corpus, tmp_path / "k", context=ContextConfig(16, exclude_special=False))
    assert kept.manifest.dtype == "float32"
    assert (kept.provenance(torch.arange(len(kept)))["position"] == 0).any()  # BOS rows kept
    cache = _capture(model, corpus, tmp_path / "b", dtype="bf16")
    assert cache.rows([0, 1], SITES[0]).dtype == torch.bfloat16
    assert cache.manifest.shards[0].bytes < kept.manifest.shards[0].bytes


def test_resume_after_a_kill_equals_an_uninterrupted_capture(
    model, corpus, tmp_path, monkeypatch
) -> None:
    whole = _capture(model, corpus, tmp_path / "whole")
    real_write, written = capture_module.write_shard, []

    def dying_write(path, tensors):
        if len(written) == 2:
            raise KeyboardInterrupt  # the process is killed while writing the third shard
        written.append(path)
        return real_write(path, tensors)

    monkeypatch.setattr(capture_module, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        _capture(model, corpus, tmp_path / "resumed")
    monkeypatch.setattr(capture_module, "write_shard", real_write)
    with pytest.raises(SaescopeError, match="unfinished"):
        open_activations(tmp_path / "resumed")
    with pytest.raises(SaescopeError, match="--resume"):
        _capture(model, corpus, tmp_path / "resumed")
    resumed = _capture(model, corpus, tmp_path / "resumed", resume=True)
    assert [s.sha256 for s in resumed.manifest.shards] == [s.sha256 for s in whole.manifest.shards]
    assert resumed.manifest.shards[0].file == whole.manifest.shards[0].file


def test_resume_with_other_settings_is_refused(model, corpus, tmp_path) -> None:
    _capture(model, corpus, tmp_path / "c")
    with pytest.raises(SaescopeError, match=r"different settings.*context"):
        _capture(model, corpus, tmp_path / "c", resume=True, context=ContextConfig(32))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_shards_are_named_on_read(model, corpus, tmp_path, damage) -> None:
    cache = _capture(model, corpus, tmp_path / "c")
    shard = cache.root / cache.manifest.shards[1].file
    data = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(data[:-10])
    elif damage == "flip":
        shard.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    else:
        shard.unlink()
    reopened = open_activations(cache.root)
    with pytest.raises(SaescopeError, match=shard.name):
        list(reopened.batches(64, SITES[0]))
    with pytest.raises(SaescopeError, match=shard.name):
        reopened.verify()


def test_corrupt_manifest_and_missing_cache(tmp_path, model, corpus) -> None:
    with pytest.raises(SaescopeError, match="not an activation cache"):
        open_activations(tmp_path)
    cache = _capture(model, corpus, tmp_path / "c")
    (cache.root / "manifest.json").write_text("{not json")
    with pytest.raises(SaescopeError, match="corrupt"):
        open_activations(cache.root)


def test_short_corpus_stops_early_and_empty_corpus_fails(model, tmp_path) -> None:
    short = Corpus("short", ["Neurons fire on acronyms. " * 20])
    cache = _capture(model, short, tmp_path / "s", tokens=10_000)
    assert 0 < len(cache) < 10_000 and "corpus exhausted" in cache.manifest.notes
    with pytest.raises(SaescopeError, match="yielded no tokens"):
        _capture(model, Corpus("tiny", ["hi"]), tmp_path / "t")


def test_non_cache_directory_is_not_overwritten(model, corpus, tmp_path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SaescopeError, match="not a saescope cache"):
        _capture(model, corpus, tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_directory_another_rank_is_starting_is_not_refused(model, corpus, tmp_path) -> None:
    # Under torchrun rank 1 may write its journal before rank 0 looks (a race CI hit).
    (tmp_path / "manifest.rank-1.json").write_text("{}")
    (tmp_path / ".saescope.lock.rank-1").touch()
    cache = _capture(model, corpus, tmp_path)
    assert len(cache) > 0


def test_manifest_records_provenance(model, corpus, tmp_path) -> None:
    cache = _capture(model, corpus, tmp_path / "c")
    manifest = json.loads((cache.root / "manifest.json").read_text())
    assert manifest["model"] == "tiny-llama" and manifest["dataset"] == "test"
    assert manifest["context"]["context_size"] == 16 and manifest["saescope_version"]
    assert all(len(s["sha256"]) == 64 and s["bytes"] > 0 for s in manifest["shards"])
