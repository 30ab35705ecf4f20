"""``saescope quickstart``: every stage that exists, on the embedded default model and corpus.

1. capture ``layers.6.resid_post`` activations into a cache (the last shard held out);
2. train a TopK SAE (width 8192, k = 32) on it;
3. evaluate it: reconstruction on the held-out shard, next-token loss with it spliced in,
   and the HTML report;
4. index its features over the cached activations and print a few that read at a glance, with
   their HTML dashboards;
5. search the index for an "ocean" feature and steer with it: clamp it during generation and
   show the next-token distribution and a continuation, clean and steered.
Reruns reuse (or resume) what is already on disk.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from saescope.activations import capture, open_activations
from saescope.activations.manifest import MANIFEST
from saescope.data import load_corpus
from saescope.evaluate.run import evaluate_saes
from saescope.jobs import SAESpec, TrainedSAE, train_saes
from saescope.models import DEFAULT_MODEL, LanguageModel, load_model
from saescope.sae import load_sae
from saescope.train.checkpoint import has_checkpoint

log = logging.getLogger(__name__)

SHARD_ROWS = 65_536
HOLDOUT_ROWS = 50_000
LOSS_TOKENS = 8_192
INDEX_TOKENS = 262_144
SHOWN_FEATURES = 6
STEER_QUERY = "ocean"
STEER_PROMPT = "My favourite thing about the weekend is"
STEER_TIMES_MAX = 0.6
"""The clamp, as a multiple of the feature's largest activation in the index. Applied at every
token, less than 1x already steers most rollouts on this SAE (docs/steering-demo.md: the sea
feature clamped to 2, ~0.6x its max, put 81% of sampled rollouts on the sea for +0.55 nats of
loss; at 3, 94%, but with stray tokens); 2x and more turn to babble."""
"""Shards close on whole contexts, a little past SHARD_ROWS, so the last one is shorter: it is
the held-out set as long as it holds this many rows."""


def run_quickstart(
    out: Path, tokens: int = 8 * SHARD_ROWS, site: str = "layers.6.resid_post", epochs: int = 2
) -> None:
    """Capture ``tokens`` training rows (+ one held-out shard), then train and score an SAE."""
    start = time.perf_counter()
    cache_dir = out / "activations"
    log.info(
        "[1/5] capture %s of %s (first run converts the model from GGUF: ~1 min)",
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
    log.info("[2/5] train %s (%d epochs over %s rows)", spec.name, epochs, f"{train_rows:,}")
    if (sae_dir / "heldout.json").exists():
        log.info("SAE %s is trained; reusing it", sae_dir)
        trained = None
    else:
        [trained] = train_saes(
            out / "saes",
            cache_dir=cache_dir,
            site=site,
            architectures=[spec.architecture],
            widths=[spec.width],
            ks=[spec.k] if spec.k else [],
            epochs=epochs,
            holdout_rows=HOLDOUT_ROWS,
            device="cpu",  # encoder dtype auto: bf16 where this CPU runs it natively
            resume=has_checkpoint(sae_dir / "checkpoint"),
        )
    log.info("[3/5] evaluate %s (spliced loss on %s tokens)", spec.name, f"{LOSS_TOKENS:,}")
    model = load_model(DEFAULT_MODEL)
    report = evaluate_saes(
        [sae_dir],
        out / "report",
        cache_dir=cache_dir,
        model=model,
        tokens=HOLDOUT_ROWS,
        loss_tokens=LOSS_TOKENS,
    )
    log.info("[4/5] index the features of %s over %s tokens", spec.name, f"{INDEX_TOKENS:,}")
    index = _index(out, cache_dir, sae_dir, model)
    _show_features(out, index)
    log.info("[5/5] steer: the feature the index finds for %r", STEER_QUERY)
    _steer(model, sae_dir, index)
    _report(out, cache_dir, sae_dir, report, trained, time.perf_counter() - start)


def _index(out: Path, cache_dir: Path, sae_dir: Path, model: LanguageModel) -> Path:
    from saescope.interpret.build import index_features
    from saescope.interpret.index import partial_dir

    path = out / "index.db"
    if path.exists():
        log.info("feature index %s exists; reusing it", path)
        return path
    return index_features(
        path,
        sae_dir=sae_dir,
        model=model,
        cache_dir=cache_dir,
        tokens=INDEX_TOKENS,
        resume=partial_dir(path).exists(),
    )


def _show_features(out: Path, path: Path) -> None:
    from saescope.interpret.dashboard import write_dashboards
    from saescope.interpret.query import FeatureIndex

    with FeatureIndex(path) as index:
        chosen = index.consistent_features(SHOWN_FEATURES)
        log.info("  index        %s   saescope show --index %s FEATURE", path, path)
        log.info("features whose top contexts agree (saescope search --index %s WORD):", path)
        for f in chosen:
            r = index.feature(f)
            promotes = " ".join(repr(t) for t, _ in r.promoted[:3])
            example = r.top[0]
            lo = max(example.focus - 8, 0)
            snippet = "".join(example.tokens[lo : example.focus + 1]).replace("\n", " ")
            log.info(
                "  %5d  %.3f%%  peaks on %s; promotes %s; e.g. ...%s",
                f, 100 * r.density, r.top_tokens, promotes, snippet,
            )  # fmt: skip
        pages = write_dashboards(index, chosen, out / "dashboards")
    log.info("  dashboards   %s", pages)


def _steer(model: LanguageModel, sae_dir: Path, path: Path) -> None:
    from saescope.interpret.query import FeatureIndex
    from saescope.steer import FeatureIntervention, GenerationConfig, clamp, compare

    with FeatureIndex(path) as index:
        hits = index.search(STEER_QUERY, limit=1)
        if not hits:
            log.info("  no feature matches %r in this index; skipping", STEER_QUERY)
            return
        feature = hits[0].feature
        record = index.feature(feature)
    value = STEER_TIMES_MAX * record.max_activation
    steer = FeatureIntervention(load_sae(sae_dir), (clamp(feature, value),))
    sampled = GenerationConfig(max_new_tokens=24, samples=2, sample=True, seed=0)
    result = compare(model, STEER_PROMPT, [steer], sampled)
    log.info(
        "  feature %d (peaks on %s) clamped to %.1f (%gx its max) at every token of %r:",
        feature, record.top_tokens, value, STEER_TIMES_MAX, STEER_PROMPT,
    )  # fmt: skip
    for name, prediction in (("clean", result.clean), ("steered", result.steered)):
        top = ", ".join(f"{t!r} {p:.2f}" for t, p in prediction.top(5))
        log.info("  %-8s next: %s", name, top)
    for name, rollouts in (("clean", result.clean_rollouts), ("steered", result.steered_rollouts)):
        for text in rollouts.texts:
            log.info("  %-8s ...%s", name, text.replace("\n", " "))
    log.info(
        "  more: saescope steer --sae %s --clamp %d=%.0f --prompt %r --samples 5",
        sae_dir, feature, value, STEER_PROMPT,
    )  # fmt: skip


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
