"""The steps the one-command recipes (``quickstart``, ``walkthrough``) share, each reusing or
resuming what an earlier run left on disk: capture a cache, train a sweep, evaluate, index.

Each step only decides "reuse, resume or run" and calls the library layer that does the work
(``capture``, ``jobs.train_saes``, ``evaluate_saes``, ``index_features``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from saescope.activations import ActivationCache, capture, open_activations
from saescope.activations.manifest import MANIFEST
from saescope.data import Corpus, load_corpus
from saescope.evaluate.run import evaluate_saes
from saescope.jobs import SAESpec, train_saes
from saescope.models import LanguageModel
from saescope.train.checkpoint import has_checkpoint

log = logging.getLogger(__name__)

SHARD_ROWS = 65_536
HOLDOUT_ROWS = 50_000
"""Shards close on whole contexts, a little past SHARD_ROWS, so the last one is shorter: it is
the held-out set as long as it holds this many rows."""


def cached_activations(
    cache_dir: Path,
    model: Callable[[], LanguageModel],
    site: str,
    tokens: int,
    corpus: Corpus | None = None,
) -> ActivationCache:
    """``tokens`` training rows of ``site`` on ``corpus`` (None: the default one), plus one
    held-out shard: the complete cache at ``cache_dir`` if there is one, else captured (resumed
    if started). ``model`` is called only when there is something to capture."""
    if (cache_dir / MANIFEST).exists() and open_activations(cache_dir, True).manifest.complete:
        log.info("activation cache %s is complete; reusing it", cache_dir)
        return open_activations(cache_dir)
    return capture(
        model(),
        [site],
        cache_dir,
        tokens=tokens + SHARD_ROWS,
        corpus=corpus if corpus is not None else load_corpus(),
        shard_rows=SHARD_ROWS,
        resume=(cache_dir / MANIFEST).exists(),
    )


def trained_saes(
    saes_dir: Path,
    cache: ActivationCache,
    site: str,
    widths: Sequence[int],
    k: int,
    epochs: int,
    **settings: Any,
) -> list[Path]:
    """TopK SAEs of each width (one sweep: one pass over the data trains them all) on the
    cache's training shards, scored on its held-out shard; reused once every one has its
    ``heldout.json``, resumed from their checkpoints if a run was cut short. ``settings``
    go to ``train_saes`` (``TrainConfig`` fields)."""
    specs = [SAESpec("topk", w, k) for w in widths]
    dirs = [saes_dir / spec.name for spec in specs]
    rows = cache.rows_in(cache.split(HOLDOUT_ROWS)[0])
    names = ", ".join(spec.name for spec in specs)
    log.info("train %s (%d epochs over %s rows, one sweep)", names, epochs, f"{rows:,}")
    if all((d / "heldout.json").exists() for d in dirs):
        log.info("SAEs %s are trained; reusing them", names)
        return dirs
    train_saes(
        saes_dir,
        cache_dir=cache.root,
        site=site,
        architectures=["topk"],
        widths=list(widths),
        ks=[k],
        epochs=epochs,
        holdout_rows=HOLDOUT_ROWS,
        device="cpu",  # encoder dtype auto: bf16 where this CPU runs it natively
        resume=any(has_checkpoint(d / "checkpoint") for d in dirs),
        **settings,
    )
    return dirs


def evaluation(
    sae_dirs: Sequence[Path],
    report_dir: Path,
    cache: ActivationCache,
    model: Callable[[], LanguageModel],
    loss_tokens: int,
    corpus: Corpus | None = None,
) -> Path:
    """``evaluate_saes`` on the held-out shard and ``loss_tokens`` of spliced loss: the report
    (on ``corpus``, None: the default one) in ``report_dir``, reused when its ``metrics.json`` scores every SAE and is newer than each
    one's weights (a retrained SAE is scored again)."""
    metrics = report_dir / "metrics.json"
    if metrics.exists():
        scored = json.loads(metrics.read_text()).get("saes", {})
        newest = max((d / "sae_weights.safetensors").stat().st_mtime for d in sae_dirs)
        if all(d.name in scored for d in sae_dirs) and metrics.stat().st_mtime > newest:
            log.info("evaluation %s is up to date; reusing it", metrics)
            return report_dir / "report.html"
    return evaluate_saes(
        list(sae_dirs),
        report_dir,
        cache_dir=cache.root,
        model=model(),
        corpus=corpus,
        tokens=HOLDOUT_ROWS,
        loss_tokens=loss_tokens,
    )


def feature_index(
    path: Path, sae_dir: Path, cache: ActivationCache, model: LanguageModel, tokens: int
) -> Path:
    """The feature index of ``sae_dir`` over ``tokens`` cached rows: reused if ``path`` exists,
    resumed if a build was cut short."""
    from saescope.interpret.build import index_features
    from saescope.interpret.index import partial_dir

    if path.exists():
        log.info("feature index %s exists; reusing it", path)
        return path
    return index_features(
        path,
        sae_dir=sae_dir,
        model=model,
        cache_dir=cache.root,
        tokens=tokens,
        resume=partial_dir(path).exists(),
    )


def heldout_line(sae_dir: Path) -> str:
    """The held-out reconstruction of an SAE, its dead fraction said over what it counts."""
    heldout = json.loads((sae_dir / "heldout.json").read_text())
    summary = json.loads((sae_dir.parent / "summary.json").read_text()).get(sae_dir.name, {})
    line = (
        f"FVU {heldout['fvu']:.3f}, L0 {heldout['l0']:.1f}; "
        f"{100 * heldout['dead_fraction']:.1f}% of latents never fired on the "
        f"{heldout['tokens']:,} held-out tokens"
    )
    if "dead_fraction_train" in summary:
        dead = 100 * summary["dead_fraction_train"]
        line += f" ({dead:.1f}% counted dead by the trainer at the end of training)"
    return line


def final_rms(model: LanguageModel, context_size: int = 128) -> float:
    """The median RMS of the last layer's output (what the final norm divides by) over the
    kept tokens of the first default-corpus context: the scale that turns a direct logit
    attribution (``interpret.attribution.logit_attribution``, which leaves that division out)
    into logits per unit of a feature at a typical token."""
    from saescope.data import ContextConfig, keep_positions, pack_contexts
    from saescope.models import run_with_cache

    ids = next(pack_contexts(load_corpus(), model.tokenizer, ContextConfig(context_size)))[None]
    site = f"layers.{model.n_layers - 1}.resid_post"
    resid = run_with_cache(model, ids, [site])[site][0].float()  # (T, d)
    keep = keep_positions(ids, model.tokenizer)[0]  # BOS is ~20x a typical token
    return float(resid[keep].pow(2).mean(-1).sqrt().median())


def promotes_text(promoted: Sequence[tuple[str, float]], rms: float, n: int = 3) -> str:
    """The first ``n`` promoted tokens of an index record with their logits per unit of the
    feature at a typical token (the index's value divided by ``final_rms``)."""
    return " ".join(f"{token!r} {value / rms:+.2f}" for token, value in promoted[:n])


def promotes_legend(rms: float) -> str:
    return (
        "promotes: the tokens whose logits one unit of the feature's activation raises most "
        "directly (its decoder row through the final norm's gain and the unembedding, skipping "
        f"the later layers), in logits at a token whose final residual has RMS {rms:,.0f} (the "
        "median on a corpus context; the final norm divides by it)"
    )
