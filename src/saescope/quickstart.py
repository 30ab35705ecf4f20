"""``saescope quickstart``: every stage that exists, on the embedded default model and corpus.

1. capture ``layers.6.resid_post`` activations into a cache (the last shard held out);
2. train a TopK SAE (width 8192, k = 32) on it;
3. evaluate it: reconstruction on the held-out shard, next-token loss with it spliced in,
   and the HTML report.
Reruns reuse (or resume) what is already on disk.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from saescope.activations import capture, open_activations
from saescope.activations.manifest import MANIFEST
from saescope.data import load_corpus
from saescope.models import DEFAULT_MODEL, load_model
from saescope.models.loading import cpu_has_fast_bf16
from saescope.pipeline import SAESpec, TrainedSAE, evaluate_saes, train_from_cache
from saescope.sae import load_sae
from saescope.train import TrainConfig

log = logging.getLogger(__name__)

SHARD_ROWS = 65_536
HOLDOUT_ROWS = 50_000
LOSS_TOKENS = 8_192
"""Shards close on whole contexts, a little past SHARD_ROWS, so the last one is shorter: it is
the held-out set as long as it holds this many rows."""


def run_quickstart(
    out: Path, tokens: int = 8 * SHARD_ROWS, site: str = "layers.6.resid_post", epochs: int = 2
) -> None:
    """Capture ``tokens`` training rows (+ one held-out shard), then train and score an SAE."""
    start = time.perf_counter()
    cache_dir = out / "activations"
    log.info(
        "[1/2] capture %s of %s (first run converts the model from GGUF: ~1 min)",
        site,
        DEFAULT_MODEL,
    )
    if (cache_dir / MANIFEST).exists() and open_activations(cache_dir, True).manifest.complete:
        log.info("activation cache %s is complete; reusing it", cache_dir)
        cache = open_activations(cache_dir)
    else:
        cache = capture(
            load_model(DEFAULT_MODEL),
            [site],
            cache_dir,
            tokens=tokens + SHARD_ROWS,
            corpus=load_corpus(),
            shard_rows=SHARD_ROWS,
            resume=(cache_dir / MANIFEST).exists(),
        )
    spec = SAESpec("topk", 8192, 32)
    sae_dir = out / "saes" / spec.name
    train_rows = cache.rows_in(cache.split(HOLDOUT_ROWS)[0])
    log.info("[2/3] train %s (%d epochs over %s rows)", spec.name, epochs, f"{train_rows:,}")
    if (sae_dir / "heldout.json").exists():
        log.info("SAE %s is trained; reusing it", sae_dir)
        trained = None
    else:
        cfg = TrainConfig(
            tokens=epochs * train_rows,
            encoder_dtype="bfloat16" if cpu_has_fast_bf16() else "float32",
        )
        resume = (sae_dir / "checkpoint" / "checkpoint.json").exists()
        [trained] = train_from_cache(
            cache_dir, out / "saes", [spec], cfg, holdout_rows=HOLDOUT_ROWS, resume=resume
        )
    log.info("[3/3] evaluate %s (spliced loss on %s tokens)", spec.name, f"{LOSS_TOKENS:,}")
    report = evaluate_saes(
        [sae_dir],
        out / "report",
        cache_dir=cache_dir,
        model=load_model(DEFAULT_MODEL),
        tokens=HOLDOUT_ROWS,
        loss_tokens=LOSS_TOKENS,
    )
    _report(out, cache_dir, sae_dir, report, trained, time.perf_counter() - start)


def _report(
    out: Path,
    cache_dir: Path,
    sae_dir: Path,
    report: Path,
    trained: TrainedSAE | None,
    seconds: float,
) -> None:
    import json

    heldout = json.loads((sae_dir / "heldout.json").read_text())
    metrics = json.loads((report.parent / "metrics.json").read_text())["saes"][sae_dir.name]
    log.info("done in %.0fs. Outputs under %s:", seconds, out)
    log.info("  activations  %s   saescope.open_activations(%r)", cache_dir, str(cache_dir))
    log.info("  SAE          %s   saescope.sae.load_sae(%r)", sae_dir, str(sae_dir))
    log.info(
        "  held-out     FVU %.3f, L0 %.1f, dead %.1f%% over %s tokens",
        heldout["fvu"],
        heldout["l0"],
        100 * heldout["dead_fraction"],
        f"{heldout['tokens']:,}",
    )
    spliced = metrics["spliced"]
    log.info(
        "  spliced in   CE %.3f -> %.3f (delta %.3f, KL %.3f), loss recovered %.1f%%",
        spliced["ce_clean"],
        spliced["ce_spliced"],
        spliced["delta_loss"],
        spliced["kl"],
        100 * spliced["loss_recovered"],
    )
    log.info("  training log %s", sae_dir / "metrics.jsonl")
    log.info("  report       %s", report)
    if trained is None:
        load_sae(sae_dir)  # check that what is on disk still loads
