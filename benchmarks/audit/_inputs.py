"""The audit's small real inputs, built once: a tiny model on disk, a corpus, a cache, an SAE
(with its run directory) and an index; plus the comparisons the kill/resume cases use."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from _harness import ROOT, Result, sc

sys.path.insert(0, str(ROOT / "tests"))

SITE = "layers.1.resid_post"
CAPTURE = ("--site", SITE, "--context-size", "32", "--batch-size", "8", "--shard-rows", "200")
TRAIN = ("--width", "128", "--k", "8", "--batch-size", "64", "--holdout", "500")
TRAIN_CKPT = ("--checkpoint-every", "5")


@dataclass
class Inputs:
    base: Path
    model: Path
    corpus: Path
    cache: Path  # 1,500 rows, ~250-row shards
    cache_big: Path  # 3,000 rows, the same settings (the reference for resume with more --tokens)
    run: Path  # a finished training run (checkpoints every 5 steps)
    sae: Path
    index: Path
    n = 0

    def tmp(self, name: str) -> Path:
        """A fresh path for one case."""
        Inputs.n += 1
        return self.base / "cases" / f"{Inputs.n:03d}-{name}"

    def capture_args(self, out: Path, tokens: int = 1500, *extra: object) -> list[object]:
        return [
            "capture",
            "--model",
            self.model,
            "--dataset",
            self.corpus,
            "--tokens",
            tokens,
            "--out",
            out,
            *CAPTURE,
            *extra,
        ]

    def train_args(self, out: Path, *extra: object) -> list[object]:
        return ["train", "--acts", self.cache, "--out", out, *TRAIN, *TRAIN_CKPT, *extra]


def _must(res: Result, what: str) -> None:
    if res.rc != 0:
        raise SystemExit(f"building the audit's inputs failed at {what}:\n{res.text[-3000:]}")


def build(base: Path) -> Inputs:
    from tiny_models import save_tiny_model, tiny_corpus

    base.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(base / "cases", ignore_errors=True)
    (base / "cases").mkdir()
    model = base / "model"
    corpus = base / "corpus.jsonl"
    if not corpus.exists():
        save_tiny_model(model, "llama")
        with corpus.open("w") as f:
            for doc in tiny_corpus().documents:
                f.write(json.dumps({"text": doc}) + "\n")
    inputs = Inputs(base, model, corpus, base / "cache", base / "cache-big", base / "run",
                    base / "run" / "topk-w128-k8", base / "index.db")  # fmt: skip
    if inputs.index.exists():  # built by an earlier run with --keep
        return inputs
    _must(sc(*inputs.capture_args(inputs.cache)), "capture")
    _must(sc(*inputs.capture_args(inputs.cache_big, 3000)), "capture (3,000 rows)")
    _must(sc(*inputs.train_args(inputs.run)), "train")
    _must(
        sc(
            "index",
            "--sae",
            inputs.sae,
            "--acts",
            inputs.cache,
            "--out",
            inputs.index,
            "--tokens",
            1500,
        ),
        "index",
    )
    return inputs


# -- comparisons -------------------------------------------------------------------------------


def same_cache(a: Path, b: Path) -> tuple[bool, str]:
    """Whether two caches hold the same rows, with the same provenance, in the same order."""
    from saescope.activations import open_activations

    try:
        ca, cb = open_activations(a), open_activations(b)
    except Exception as err:
        return False, f"cannot open: {err}"
    if len(ca) != len(cb):
        return False, f"rows {len(ca)} vs {len(cb)} in a fresh capture"
    index = list(range(len(ca)))
    pa, pb = ca.provenance(index), cb.provenance(index)
    for key in pa:
        if not torch.equal(pa[key], pb[key]):
            bad = int((pa[key] != pb[key]).nonzero()[0, 0])
            return False, f"{key} differs from a fresh capture first at row {bad}"
    diff = (ca.rows(index).float() - cb.rows(index).float()).abs().max().item()
    if diff != 0:
        return False, f"activations differ from a fresh capture (max abs diff {diff:.3g})"
    return True, f"{len(ca)} rows equal to a fresh capture"


def weights(sae_dir: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(sae_dir / "sae_weights.safetensors"))


def same_weights(a: Path, b: Path) -> tuple[bool, str]:
    try:
        wa, wb = weights(a), weights(b)
    except Exception as err:
        return False, f"cannot read weights: {err}"
    if wa.keys() != wb.keys():
        return False, f"tensors {sorted(wa)} vs {sorted(wb)}"
    diff = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    if diff != 0 or any(torch.isnan(v).any() for v in wa.values()):
        return False, f"final weights differ from the uninterrupted run (max abs diff {diff:.3g})"
    return True, "final weights equal to the uninterrupted run"


def metrics_steps_unique(run_sae: Path) -> tuple[bool, str]:
    path = run_sae / "metrics.jsonl"
    if not path.exists():
        return True, "no metrics.jsonl"
    steps = [json.loads(x).get("step") for x in path.read_text().splitlines() if x.strip()]
    dup = sorted({s for s in steps if steps.count(s) > 1})
    return (not dup), (f"metrics.jsonl repeats steps {dup}" if dup else "metrics steps unique")


def index_rows(path: Path) -> dict[str, list]:
    """Every table of an index but ``meta`` (which names paths and times), sorted."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        return {
            t: sorted(con.execute(f"select * from {t}").fetchall(), key=repr)
            for t in tables
            if t != "meta"
        }
    finally:
        con.close()


def same_index(a: Path, b: Path) -> tuple[bool, str]:
    try:
        ra, rb = index_rows(a), index_rows(b)
    except Exception as err:
        return False, f"cannot read the index: {err}"
    differ = [t for t in ra if ra[t] != rb.get(t)]
    if differ:
        return False, f"tables {differ} differ from an uninterrupted build"
    return True, f"{sum(len(v) for v in ra.values())} rows equal to an uninterrupted build"


def copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    return dst
