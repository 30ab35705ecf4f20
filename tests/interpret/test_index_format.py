"""The index stores data (the peaks table), refuses older formats, saves its build state as one
atomic file, and refuses non-finite activations from any source."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import numpy as np
import pytest
import torch
from tiny_models import TEXT, tiny_hf_model, tiny_tokenizer

from saescope import cli
from saescope.data import ContextConfig, keep_positions, pack_contexts
from saescope.errors import SaescopeError
from saescope.interpret import index as index_module
from saescope.interpret.batches import live_batches
from saescope.interpret.build import index_features
from saescope.interpret.collect import CollectConfig
from saescope.interpret.index import STATE_FILE, build_index, partial_dir
from saescope.interpret.query import FeatureIndex, peaks_text
from saescope.interpret.sources import sae_source
from saescope.models import run_with_cache
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"
CONTEXT = ContextConfig(context_size=32)
CFG = CollectConfig(top=5, samples=4, zeros=2, before=4, after=2, zero_pool=16)
TOKENS = 3_000


@pytest.fixture
def sae_dir(tmp_path, model):
    cfg = SAEConfig(
        d_in=64, d_sae=48, architecture="topk", k=6,
        metadata=SAEMetadata(hook_name=SITE, model_name=model.name),
    )  # fmt: skip
    save_sae(build_sae(cfg, seed=3), tmp_path / "sae")
    return tmp_path / "sae"


def build(tmp_path, model, corpus, sae_dir, name="index.db", **kwargs):
    return index_features(
        tmp_path / name, sae_dir=sae_dir, model=model, corpus=corpus, context=CONTEXT,
        tokens=TOKENS, collect=CFG, progress=False, **kwargs,
    )  # fmt: skip


def test_peaks_are_rows_that_search_and_descriptions_read(tmp_path, model, corpus, sae_dir):
    path = build(tmp_path, model, corpus, sae_dir)
    db = sqlite3.connect(path)
    columns = [row[1] for row in db.execute("PRAGMA table_info(features)")]
    assert "top_tokens" not in columns  # no display string is stored
    checked = 0
    with FeatureIndex(path) as index:
        for f in range(index.n_features):
            focus_ids = [
                int(np.frombuffer(ids, dtype="<i4")[focus])
                for ids, focus in db.execute(
                    "SELECT token_ids, focus FROM examples WHERE feature = ? AND kind = 'top'",
                    (f,),
                )
            ]
            rows = db.execute(
                "SELECT rank, token, count FROM peaks WHERE feature = ? ORDER BY rank", (f,)
            ).fetchall()
            # the peaks rows count exactly the tokens the stored top examples peak on
            assert Counter(focus_ids) == {token: count for _, token, count in rows}, f
            assert [r for r, _, _ in rows] == list(range(len(rows)))
            counts = [count for _, _, count in rows]
            assert counts == sorted(counts, reverse=True)
            (share,) = db.execute(
                "SELECT peak_share FROM features WHERE feature = ?", (f,)
            ).fetchone()
            assert share == pytest.approx(counts[0] / sum(counts) if counts else 0.0)
            record = index.feature(f)
            assert record.peaks == index.peaks(f) and sum(c for _, c in record.peaks) == len(
                record.top
            )
            assert record.top_tokens == ", ".join(f"{t!r}×{n}" for t, n in record.peaks[:3])
            assert index.describe([f])[f] == record.description
            checked += bool(rows)
        assert checked > 10
        # a whole-token match at the peak ranks the feature with the word as its commonest peak
        f, word = next(
            (f, t.strip())
            for f in range(index.n_features)
            for t, _ in index.peaks(f)[:1]
            if t.strip().isalpha()
        )
        hit = next(h for h in index.search(word.upper()) if h.feature == f)
        assert (hit.reason, hit.whole) == ("peak", True) and hit.peaks == index.peaks(f)
        assert hit.top_tokens == peaks_text(hit.peaks)
        for hit in index.search("%"):  # a LIKE wildcard in a query is a literal character
            record = index.feature(hit.feature)
            texts = [t for t, _ in record.peaks + record.promoted]
            assert any("%" in t for t in texts + ["".join(e.tokens) for e in record.top])
        assert len(index.search("%", limit=100)) < index.n_features
        chosen = index.consistent_features(3, density=(0, 1), min_letters=1)
        for c in chosen:
            assert index.peaks(c)[0][1] * 2 >= sum(n for _, n in index.peaks(c))
        assert len({index.peaks(c)[0][0].strip().lower() for c in chosen}) == len(chosen)
    # an index of the previous format is refused with what to do
    db.execute("UPDATE meta SET value = ? WHERE key = 'format'", (json.dumps("saescope.index/1"),))
    db.commit()
    db.close()
    with pytest.raises(SaescopeError, match=r"saescope.index/1.*--overwrite"):
        FeatureIndex(path)


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs (not even ``except Exception``)."""


def test_a_kill_inside_a_checkpoint_write_resumes_to_the_same_index(
    tmp_path, model, corpus, sae_dir, monkeypatch
):
    whole = build(tmp_path, model, corpus, sae_dir, "whole.db")
    real_write = index_module.write_atomic
    calls = 0

    def dies_in_second_write(path, data):
        nonlocal calls
        calls += 1
        if calls == 2:  # half the bytes reach a temporary file, then the process dies
            (path.parent / f".{path.name}.tmp-killed").write_bytes(data[: len(data) // 2])
            raise Killed
        real_write(path, data)

    monkeypatch.setattr(index_module, "write_atomic", dies_in_second_write)
    with pytest.raises(Killed):
        build(tmp_path, model, corpus, sae_dir, "resumed.db", checkpoint_seconds=0)
    monkeypatch.setattr(index_module, "write_atomic", real_write)
    folder = partial_dir(tmp_path / "resumed.db")
    assert sorted(p.name for p in folder.iterdir()) == [f".{STATE_FILE}.tmp-killed", STATE_FILE]
    resumed = build(tmp_path, model, corpus, sae_dir, "resumed.db", resume=True)
    assert not folder.exists()
    a, b = sqlite3.connect(whole), sqlite3.connect(resumed)
    for table in ("features", "peaks", "examples", "logits", "neighbours"):
        assert (
            a.execute(f"SELECT * FROM {table}").fetchall()
            == b.execute(f"SELECT * FROM {table}").fetchall()
        ), table


def test_unreadable_or_two_part_states_are_refused(tmp_path, model, corpus, sae_dir):
    folder = partial_dir(tmp_path / "index.db")
    folder.mkdir()
    (folder / STATE_FILE).write_bytes(b"\x00" * 100)
    with pytest.raises(SaescopeError, match=r"not a readable index-build state.*delete"):
        build(tmp_path, model, corpus, sae_dir, resume=True)
    (folder / "meta.json").write_text("{}")  # the layout before format 2: two files
    with pytest.raises(SaescopeError, match="old two-file layout"):
        build(tmp_path, model, corpus, sae_dir, resume=True)
    assert not (tmp_path / "index.db").exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_batch_stops_the_build_naming_where(tmp_path, model, corpus, sae_dir, bad):
    source = sae_source(sae_dir)
    poisoned = {}

    def batches(start):
        for i, (batch, cursor) in enumerate(live_batches(model, SITE, corpus, CONTEXT, 3, start)):
            if i == 1:
                batch.acts[5, 7] = bad
                poisoned.update(
                    context=int(batch.contexts[batch.row_context[5]]),
                    position=int(batch.row_position[5]),
                )
            yield batch, cursor

    out = tmp_path / "index.db"
    with pytest.raises(SaescopeError, match="non-finite") as error:
        build_index(source, model, batches, out, TOKENS, {"model": model.name}, CFG, progress=False)
    assert f"context {poisoned['context']} position {poisoned['position']}" in str(error.value)
    assert f"activation {bad}" in str(error.value)
    assert not out.exists() and not partial_dir(out).exists()


def _token_of(tokenizer, word: str) -> int:
    """A token id of ``word`` (its first piece: the tiny tokenizer splits it)."""
    return int(tokenizer(word, add_special_tokens=False)["input_ids"][0])


def test_a_live_model_that_produces_nan_is_refused(tmp_path, model, corpus, sae_dir):
    token = _token_of(model.tokenizer, " Watson")
    with torch.no_grad():
        model.hf.get_input_embeddings().weight[token] = float("nan")
    ids = torch.stack(list(pack_contexts(corpus, model.tokenizer, CONTEXT)))  # (C, T)
    acts = run_with_cache(model, ids, [SITE])[SITE]  # (C, T, d)
    keep = keep_positions(ids, model.tokenizer)
    bad = keep & ~torch.isfinite(acts).all(-1)
    context, position = (int(i) for i in torch.nonzero(bad)[0])  # the first in stream order
    with pytest.raises(SaescopeError, match=f"context {context} position {position} of the model"):
        build(tmp_path, model, corpus, sae_dir)
    assert not (tmp_path / "index.db").exists()


def test_the_index_command_exits_2_on_nan(tmp_path, caplog):
    hf = tiny_hf_model("llama")
    tokenizer = tiny_tokenizer()
    with torch.no_grad():
        hf.get_input_embeddings().weight[_token_of(tokenizer, " Watson")] = float("nan")
    hf.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "corpus.txt").write_text(TEXT)
    argv = ["index", "--site", "layers.1.mlp_act", "--out", str(tmp_path / "index.db"),
            "--model", str(tmp_path / "model"), "--dtype", "fp32",
            "--dataset", str(tmp_path / "corpus.txt"), "--context-size", "32"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "non-finite" in caplog.text and "position" in caplog.text
    assert not (tmp_path / "index.db").exists()
