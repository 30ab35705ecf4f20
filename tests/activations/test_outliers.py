"""The outlier policy: recorded norms, old caches without them, and one rule applied identically
by training, evaluation and the index (a tiny cache with planted huge-norm rows)."""

import json
import logging
import sqlite3

import pytest
import torch
from tiny_models import save_tiny_model, tiny_corpus

from saescope import cli
from saescope.activations import capture, open_activations
from saescope.activations.manifest import MANIFEST, read_manifest, save_manifest
from saescope.activations.outliers import OutlierPolicy, row_norms
from saescope.activations.shards import acts_key, norms_key, write_shard
from saescope.data import ContextConfig
from saescope.errors import SaescopeError
from saescope.evaluate.run import evaluate_saes
from saescope.interpret.build import index_features
from saescope.jobs import train as train_job
from saescope.models import load_model
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"
PLANT = 40.0  # planted rows get 40x their norm: far above any multiple tested


def _rewrite(root, edit) -> None:
    """Apply ``edit(index, tensors)`` to every shard and keep the manifest true to the files."""
    cache = open_activations(root)
    shards = []
    for i, info in enumerate(cache.manifest.shards):
        tensors = dict(cache.load_shard(i))
        edit(i, tensors)
        size, digest = write_shard(root / info.file, tensors)
        shards.append(type(info)(**{**info.__dict__, "bytes": size, "sha256": digest}))
    manifest = read_manifest(root / MANIFEST)
    save_manifest(root / MANIFEST, type(manifest)(**{**manifest.__dict__, "shards": tuple(shards)}))


def _plant(i: int, tensors: dict) -> None:
    acts = tensors[acts_key(SITE)]
    if i > 0:  # the first shard (the median's) stays ordinary
        acts[3::17] *= PLANT
    tensors[norms_key(SITE)] = row_norms(acts)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A cache (8 shards of ~60 rows) whose rows 3, 20, 37, ... of shards 1..7 are huge."""
    root = tmp_path_factory.mktemp("outliers")
    save_tiny_model(root / "model", "llama")
    model = load_model(str(root / "model"), dtype="fp32", device="cpu")
    capture(model, [SITE], root / "cache", tokens=480, corpus=tiny_corpus(),
            context=ContextConfig(context_size=16), dtype="float32", batch_size=4,
            shard_rows=60, progress=False)  # fmt: skip
    _rewrite(root / "cache", _plant)
    d = open_activations(root / "cache").d(SITE)
    cfg = SAEConfig(d_in=d, d_sae=48, architecture="topk", k=4,
                    metadata=SAEMetadata(hook_name=SITE, model_name=model.name))  # fmt: skip
    save_sae(build_sae(cfg, seed=1), root / "sae")
    return root, model


def _key(row: torch.Tensor) -> tuple:
    return tuple(row.tolist())


def _outliers(cache, multiple: float) -> tuple[set, torch.Tensor]:
    """The rows (as value tuples) the policy flags, from the rows themselves, and all rows."""
    everything = cache.rows(torch.arange(len(cache)), SITE).float()
    threshold = multiple * float(row_norms(cache.rows(torch.arange(60), SITE)).median())
    return {_key(r) for r in everything[row_norms(everything) > threshold]}, everything


def test_capture_records_each_rows_norm_and_old_caches_without_norms_still_read(
    model, corpus, tmp_path
) -> None:
    cache = capture(model, [SITE], tmp_path / "c", tokens=200, corpus=corpus,
                    context=ContextConfig(context_size=16), dtype="bfloat16", batch_size=4,
                    shard_rows=60, progress=False)  # fmt: skip
    shard = cache.load_shard(0)
    assert shard[norms_key(SITE)].dtype == torch.float32
    assert torch.equal(shard[norms_key(SITE)], row_norms(shard[acts_key(SITE)]))
    median = cache.median_norm(SITE)
    before = list(cache.batches(16, SITE, shuffle=False, outliers=OutlierPolicy("exclude", 1.1)))

    _rewrite(tmp_path / "c", lambda i, t: t.pop(norms_key(SITE)))  # as captured before norms
    old = open_activations(tmp_path / "c")
    assert norms_key(SITE) not in old.load_shard(0)
    assert old.median_norm(SITE) == median
    after = list(old.batches(16, SITE, shuffle=False, outliers=OutlierPolicy("exclude", 1.1)))
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert sum(map(len, after)) < len(old)  # 1.1 x the median flags some ordinary rows


@pytest.mark.parametrize("mode", ["keep", "downweight", "exclude"])
def test_training_evaluation_and_index_apply_the_same_rule(
    planted, mode, tmp_path, monkeypatch
) -> None:
    root, model = planted
    cache = open_activations(root / "cache")
    policy = OutlierPolicy(mode, multiple=5.0)
    flagged, everything = _outliers(cache, 5.0)
    assert len(flagged) == sum(len(range(3, info.rows, 17)) for info in cache.manifest.shards[1:])
    threshold = cache.outlier_rule(policy, SITE).threshold

    # Training: record what the real trainer is handed (train_saes -> cache.batches -> fit).
    seen: list[torch.Tensor] = []
    real_fit = train_job.fit

    def recording_fit(trainers, batches, *args, **kwargs):
        def tee():
            for b in batches:
                seen.append(b.clone())
                yield b

        return real_fit(trainers, tee(), *args, **kwargs)

    monkeypatch.setattr(train_job, "fit", recording_fit)
    train_job.train_saes(tmp_path / "run", cache_dir=root / "cache", widths=[32], ks=[4],
                         tokens=len(cache), batch_size=20, encoder_dtype="float32",
                         device="cpu", progress=False, outliers=policy)  # fmt: skip
    rows = torch.cat(seen)
    norms = row_norms(rows)
    trained_on_flagged = sum(_key(r) in flagged for r in rows)
    if mode == "keep":
        assert trained_on_flagged > 0 and norms.max() > threshold
    elif mode == "exclude":
        assert trained_on_flagged == 0 and norms.max() <= threshold
    else:  # down-weighted: scaled onto the threshold, direction kept
        assert trained_on_flagged == 0 and norms.max() == pytest.approx(threshold, rel=1e-5)
        scaled = {_key(r / r.norm()) for r in rows[norms > threshold * 0.9999]}
        assert len(scaled) > 0

    # Evaluation: "without outliers" scores exactly the rows the policy flags out, any mode.
    report = tmp_path / "report"
    evaluate_saes([root / "sae"], report, cache_dir=root / "cache", tokens=200, outliers=policy)
    metrics = json.loads((report / "metrics.json").read_text())["saes"]["sae"]
    held = cache.split(200)[1]
    held_rows = torch.cat(list(cache.batches(1000, SITE, shuffle=False, shards=held)))
    held_flagged = sum(_key(r) in flagged for r in held_rows)
    assert metrics["outliers"]["outlier_rows"] == held_flagged > 0
    assert metrics["without_outliers"]["tokens"] == len(held_rows) - held_flagged
    assert metrics["reconstruction"]["tokens"] == len(held_rows)
    assert metrics["outliers"]["threshold"] == pytest.approx(threshold)
    assert metrics["without_outliers"]["fvu"] != metrics["reconstruction"]["fvu"]

    # The index: excluded rows are not counted and never an example's peak.
    db = tmp_path / "index.db"
    index_features(db, sae_dir=root / "sae", cache_dir=root / "cache", model=model,
                   tokens=len(cache), progress=False, outliers=policy)  # fmt: skip
    con = sqlite3.connect(db)
    meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    peaks = set(con.execute("SELECT context, position FROM examples WHERE kind = 'top'"))
    con.close()
    assert meta["outliers"]["mode"] == mode
    assert meta["outliers"]["threshold"] == pytest.approx(threshold)
    provenance = cache.provenance(torch.arange(len(cache)))
    flagged_at = {
        (int(c), int(p))
        for r, c, p in zip(everything, provenance["context"], provenance["position"], strict=True)
        if _key(r) in flagged
    }
    expected_rows = len(cache) - (len(flagged) if mode == "exclude" else 0)
    assert meta["tokens"] == expected_rows
    if mode == "exclude":
        assert not peaks & flagged_at
    if mode == "keep":
        assert peaks & flagged_at  # huge rows dominate the raw top contexts


def test_the_flags_reach_train_eval_and_index(planted, tmp_path, caplog) -> None:
    root, _ = planted
    flags = ["--outliers", "downweight", "--outlier-multiple", "7"]
    caplog.set_level(logging.INFO)
    argv = ["train", "--acts", str(root / "cache"), "--out", str(tmp_path / "run"), "--width",
            "32", "--k", "4", "--batch-size", "20", "--holdout", "0",
            "--encoder-dtype", "float32", *flags]  # fmt: skip
    assert cli.main(argv) == 0
    assert "'mode': 'downweight', 'multiple': 7.0" in caplog.text
    argv = ["eval", "--sae", str(root / "sae"), "--acts", str(root / "cache"), "--out",
            str(tmp_path / "rep"), "--tokens", "200", *flags]  # fmt: skip
    assert cli.main(argv) == 0
    got = json.loads((tmp_path / "rep" / "metrics.json").read_text())["saes"]["sae"]["outliers"]
    assert (got["mode"], got["multiple"]) == ("downweight", 7.0)
    assert "w/o outliers" in (tmp_path / "rep" / "report.html").read_text()
    argv = ["index", "--sae", str(root / "sae"), "--acts", str(root / "cache"), "--out",
            str(tmp_path / "i.db"), "--tokens", "100", "--model", str(root / "model"),
            "--dtype", "fp32", *flags]  # fmt: skip
    assert cli.main(argv) == 0
    con = sqlite3.connect(tmp_path / "i.db")
    [(value,)] = con.execute("SELECT value FROM meta WHERE key = 'outliers'")
    assert json.loads(value)["multiple"] == 7.0


def test_bad_values_give_clear_errors(planted, tmp_path, caplog, capsys) -> None:
    root, _ = planted
    with pytest.raises(SaescopeError, match="outlier mode 'drop' is not one of keep, downweight"):
        OutlierPolicy("drop")  # type: ignore[arg-type]
    for bad in (1.0, 0.5, float("inf"), float("nan"), True):
        with pytest.raises(SaescopeError, match="outlier multiple must be a finite number > 1"):
            OutlierPolicy("exclude", bad)
    with pytest.raises(SaescopeError, match="median row norm must be a finite number > 0"):
        OutlierPolicy().rule_from(torch.zeros(4, 3))
    base = ["eval", "--sae", str(root / "sae"), "--acts", str(root / "cache"), "--out",
            str(tmp_path / "rep")]  # fmt: skip
    assert cli.main([*base, "--outlier-multiple", "0.5"]) == 2
    assert "pass e.g. --outlier-multiple 5" in caplog.text
    with pytest.raises(SystemExit) as exit_:
        cli.main([*base, "--outliers", "drop"])
    assert exit_.value.code == 2 and "invalid choice: 'drop'" in capsys.readouterr().err
