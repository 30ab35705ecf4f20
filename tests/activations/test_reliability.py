"""The capture/cache failure cases of the reliability audit, each as found."""

import errno
import json
import multiprocessing
import os
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

import saescope.activations.extract as extract
import saescope.activations.writer as writer
from saescope import cli
from saescope._files import exclusive
from saescope.activations import capture, open_activations
from saescope.activations.shards import check_finite
from saescope.data import ContextConfig
from saescope.errors import SaescopeError

SITE = "layers.1.resid_post"
CONTEXT = ContextConfig(context_size=16, seed=0)


def _capture(model, corpus, out, **kwargs):
    kwargs = {"tokens": 157, "context": CONTEXT, "batch_size": 4, "shard_rows": 100, **kwargs}
    return capture(model, [SITE], out, corpus=corpus, progress=False, **kwargs)


def _edit_manifest(root, edit) -> None:
    data = json.loads((root / "manifest.json").read_text())
    edit(data)
    (root / "manifest.json").write_text(json.dumps(data))


def test_resume_with_more_tokens_equals_a_fresh_capture(model, corpus, tmp_path) -> None:
    fresh = _capture(model, corpus, tmp_path / "fresh", tokens=300)
    first = _capture(model, corpus, tmp_path / "grown", tokens=157)  # cut inside a context
    last = first.provenance([156])
    assert first.manifest.shards[-1].contexts_done == int(last["context"])  # not counted done
    grown = _capture(model, corpus, tmp_path / "grown", tokens=300, resume=True)
    everything = torch.arange(300)
    for key, want in fresh.provenance(everything).items():
        assert torch.equal(grown.provenance(everything)[key], want), key
    torch.testing.assert_close(grown.rows(everything), fresh.rows(everything))


def test_misstated_shard_rows_are_caught_before_any_row_is_returned(
    model, corpus, tmp_path
) -> None:
    root = _capture(model, corpus, tmp_path / "c", tokens=300).root
    _edit_manifest(root, lambda m: m["shards"][0].update(rows=m["shards"][0]["rows"] - 4))
    cache = open_activations(root, allow_incomplete=True)
    n = cache.manifest.shards[1].rows + cache.manifest.shards[0].rows
    with pytest.raises(SaescopeError, match=r"r00-00000.*tokens has shape \[\d+\], the manifest"):
        cache.provenance([n - 1])  # was: another row's provenance, without a word
    with pytest.raises(SaescopeError, match="r00-00000"):
        cache.verify()
    _edit_manifest(root, lambda m: m["shards"][0].update(rows=m["shards"][0]["rows"] + 50))
    with pytest.raises(SaescopeError, match=r"r00-00000.*the manifest says"):  # was IndexError
        open_activations(root).rows([n - 1])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["sites"].update({SITE: 65}), r"acts.layers.1.resid_post has shape"),
        (lambda m: m["shards"][0].update(rows="100"), r"rows must be an integer.*'100'"),
    ],
)
def test_manifest_that_misdescribes_its_shards_is_named(
    model, corpus, tmp_path, edit, message
) -> None:
    root = _capture(model, corpus, tmp_path / "c").root
    _edit_manifest(root, edit)
    with pytest.raises(SaescopeError, match=message):
        open_activations(root).verify()


def test_manifest_that_is_a_list_is_corrupt(model, corpus, tmp_path) -> None:
    root = _capture(model, corpus, tmp_path / "c").root
    (root / "manifest.json").write_text("[1, 2]")
    with pytest.raises(SaescopeError, match=r"corrupt.*expected a JSON object, found a list"):
        open_activations(root)


def test_nan_rows_are_refused_by_every_reader(model, corpus, tmp_path, monkeypatch) -> None:
    real = extract.run_with_cache

    def one_nan(model, input_ids, sites):
        acts = {k: v.clone() for k, v in real(model, input_ids, sites).items()}  # editable
        acts[SITE][1, 5] = float("nan")  # second context of each batch, position 5
        return acts

    monkeypatch.setattr(extract, "run_with_cache", one_nan)
    cache = _capture(model, corpus, tmp_path / "c", tokens=300)
    with pytest.raises(SaescopeError, match=r"r00-0000\d.safetensors row \d+ .*NaN or inf"):
        list(cache.batches(32))
    first = cache.manifest.shards[0].rows
    raw = safetensors.torch.load_file(cache.root / cache.manifest.shards[1].file)
    bad = int(torch.isnan(raw[f"acts.{SITE}"]).any(-1).nonzero()[0])
    with pytest.raises(SaescopeError, match=rf"r00-00001.safetensors row {bad} "):
        cache.rows([first + bad])
    cache.rows([first + bad + 1])  # the finite rows next to it still read
    with pytest.raises(SaescopeError, match="NaN"):
        cache.verify()


def test_bad_sizes_and_context_beyond_the_model_fail_before_any_work(
    model, corpus, tmp_path
) -> None:
    with pytest.raises(SaescopeError, match="shard_rows must be >= 1, got 0"):
        _capture(model, corpus, tmp_path / "a", shard_rows=0)
    with pytest.raises(SaescopeError, match="context size 100000 exceeds the 256 positions"):
        _capture(model, corpus, tmp_path / "b", context=ContextConfig(context_size=100_000))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_failed_first_capture_does_not_block_the_same_command(
    model, corpus, tmp_path, monkeypatch
) -> None:
    def oom(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(writer, "_forward", oom)
    with pytest.raises(RuntimeError):
        _capture(model, corpus, tmp_path / "c")
    monkeypatch.undo()
    assert len(_capture(model, corpus, tmp_path / "c")) == 157  # no --resume needed


def test_full_disk_names_the_path_and_leaves_no_temporary_file(
    model, corpus, tmp_path, monkeypatch
) -> None:
    real_replace = os.replace

    def full(src, dst):
        if str(dst).endswith(".safetensors"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(SaescopeError, match=r"r00-00000.safetensors: No space left on device"):
        _capture(model, corpus, tmp_path / "c")
    assert not [p for p in (tmp_path / "c").rglob("*") if ".tmp" in p.name]
    monkeypatch.undo()
    assert len(_capture(model, corpus, tmp_path / "c")) == 157  # the retry just works
    (tmp_path / "file").write_text("x")
    with pytest.raises(SaescopeError, match=r"cannot write the cache at .*file"):
        _capture(model, corpus, tmp_path / "file" / "cache")


def test_two_opens_of_one_lock_conflict_in_one_process(tmp_path) -> None:
    held_twice = rf"another saescope process \(pid {os.getpid()}\)"
    with exclusive(tmp_path, "the cache"), pytest.raises(SaescopeError, match=held_twice):  # noqa: SIM117
        with exclusive(tmp_path, "the cache"):  # a second open file description: conflicts
            pass
    with exclusive(tmp_path, "the cache"):  # released on exit
        pass


def _hold_lock(path, ready, release) -> None:
    with exclusive(path, "the cache"):
        ready.set()
        release.wait(30)


def test_a_capture_refuses_a_cache_another_process_is_writing(model, corpus, tmp_path) -> None:
    root = _capture(model, corpus, tmp_path / "c").root
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(root, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(SaescopeError, match=rf"being written by .*pid {holder.pid}.*--out"):
            _capture(model, corpus, root, tokens=300, resume=True)
    finally:
        release.set()
        holder.join(30)
    assert len(_capture(model, corpus, root, tokens=300, resume=True)) == 300


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_capture_on_cuda_without_cuda_is_one_line(tmp_path, caplog) -> None:
    argv = ["capture", "--device", "cuda", "--site", SITE, "--tokens", "10"]
    assert cli.main([*argv, "--out", str(tmp_path / "c")]) == 2
    assert "no CUDA device" in caplog.text and not (tmp_path / "c").exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_finite_check_names_the_row_and_survives_an_overflowing_sum(dtype) -> None:
    big = torch.full((10, 4), 6e4 if dtype == torch.float16 else 3e38).to(dtype)
    check_finite(Path("s"), "acts.x", big)  # the sum overflows, every value is finite
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.randn(10, 4).to(dtype)
        x[7, 2] = bad
        with pytest.raises(SaescopeError, match=r"row 7 of acts\.x"):
            check_finite(Path("s"), "acts.x", x)
