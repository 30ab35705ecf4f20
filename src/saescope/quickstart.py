"""``saescope quickstart``: every stage that exists, on the embedded default model and corpus.

1. capture ``layers.6.resid_post`` activations into a cache (the last shard held out);
2. train a TopK SAE (width 8192, k = 32) on it;
3. evaluate it: reconstruction on the held-out shard, next-token loss with it spliced in,
   and the HTML report;
4. index its features over the cached activations and print a few that read at a glance, with
   their HTML dashboards;
5. find an ocean feature (word search, example search as the fallback) and steer with it: clamp it during generation and
   show the next-token distribution and a continuation, clean and steered.
Reruns reuse (or resume) what is already on disk.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from saescope import steps
from saescope.models import DEFAULT_MODEL, LanguageModel, load_model
from saescope.sae import load_sae
from saescope.steps import SHARD_ROWS
from saescope.walkthrough import LAYER as WALKTHROUGH_LAYER

log = logging.getLogger(__name__)

LOSS_TOKENS = 8_192
INDEX_TOKENS = 262_144
SHOWN_FEATURES = 6
STEER_QUERY = "ocean"
STEER_TEXTS = (
    "The ship sailed across the ocean, waves crashing against its hull.",
    "Fishermen cast their nets into the sea at dawn.",
    "Sailors on the deck watched the waves and the endless blue ocean.",
)
STEER_CONTRAST = (
    "The train travelled across the country, wheels rattling along the track.",
    "Workers in the office watched the clock and the endless grey sky.",
)
"""The steering stage's feature: the first hit of the word search for STEER_QUERY (peak tokens
first, whole words first, by concentration), else the first non-dense hit of the example search
on these sentences against the contrast ones. On the quickstart SAE (measured 2026-12-02, 12
sampled rollouts, clamp 0.6x max) word search's ' sea'/' Ocean' feature put 7/12 rollouts on
the sea against 1/12 unsteered; example search's first hit, a ' waves' feature, 2/12."""
STEER_PROMPT = "My favourite thing about the weekend is"
STEER_TIMES_MAX = 0.6
"""The clamp, as a multiple of the feature's largest activation in the index. Applied at every
token, less than 1x already steers most rollouts on this SAE (docs/steering-demo.md: the sea
feature clamped to 2, ~0.6x its max, put 81% of sampled rollouts on the sea for +0.55 nats of
loss; at 3, 94%, but with stray tokens); 2x and more turn to babble."""


def run_quickstart(
    out: Path, tokens: int = 8 * SHARD_ROWS, site: str = "layers.6.resid_post", epochs: int = 2
) -> None:
    """Capture ``tokens`` training rows (+ one held-out shard), then train and score an SAE."""
    start = time.perf_counter()
    model = functools.cache(lambda: load_model(DEFAULT_MODEL))
    cache_dir = out / "activations"
    log.info(
        "[1/5] capture %s of %s (first run converts the model from GGUF: ~1 min)",
        site,
        DEFAULT_MODEL,
    )
    cache = steps.cached_activations(cache_dir, model, site, tokens)
    log.info("[2/5] train")
    [sae_dir] = steps.trained_saes(out / "saes", cache, site, [8192], 32, epochs)
    log.info("[3/5] evaluate %s (spliced loss on %s tokens)", sae_dir.name, f"{LOSS_TOKENS:,}")
    report = steps.evaluation([sae_dir], out / "report", cache, model, LOSS_TOKENS)
    log.info("[4/5] index the features of %s over %s tokens", sae_dir.name, f"{INDEX_TOKENS:,}")
    index = steps.feature_index(out / "index.db", sae_dir, cache, model(), INDEX_TOKENS)
    _show_features(out, index, model())
    log.info("[5/5] steer: the feature the index finds for the ocean")
    _steer(model(), sae_dir, index)
    _report(out, cache_dir, sae_dir, report, time.perf_counter() - start)


def _show_features(out: Path, path: Path, model: LanguageModel) -> None:
    from saescope.interpret.dashboard import write_dashboards
    from saescope.interpret.query import FeatureIndex

    with FeatureIndex(path) as index:
        chosen = index.consistent_features(SHOWN_FEATURES)
        log.info("  index        %s   saescope show --index %s FEATURE", path, path)
        log.info("features whose top contexts agree (saescope search --index %s WORD):", path)
        rms = steps.final_rms(model)
        for f in chosen:
            r = index.feature(f)
            promotes = steps.promotes_text(r.promoted, rms)
            example = r.top[0]
            lo = max(example.focus - 8, 0)
            snippet = "".join(example.tokens[lo : example.focus + 1]).replace("\n", " ")
            log.info(
                "  %5d  %.3f%%  peaks on %s; promotes %s; e.g. ...%s",
                f, 100 * r.density, r.description, promotes, snippet,
            )  # fmt: skip
        log.info("  (%s)", steps.promotes_legend(rms))
        pages = write_dashboards(index, chosen, out / "dashboards")
    log.info("  dashboards   %s", pages)


def _steer(model: LanguageModel, sae_dir: Path, path: Path) -> None:
    from saescope.interpret.find import search_by_example
    from saescope.interpret.query import FeatureIndex
    from saescope.steer import FeatureIntervention, GenerationConfig, clamp, compare

    sae = load_sae(sae_dir)
    with FeatureIndex(path) as index:
        hits = [h.feature for h in index.search(STEER_QUERY, limit=1)]
        how = f"by the word {STEER_QUERY!r} (saescope search --index ... {STEER_QUERY})"
        if not hits:
            found = search_by_example(model, sae, index, list(STEER_TEXTS), list(STEER_CONTRAST))
            hits = [h.feature for h in found if not h.dense]
            how = "by example (saescope search --text ...)"
        if not hits:
            log.info("  no feature found for %r in this index; skipping", STEER_QUERY)
            return
        feature = hits[0]
        record = index.feature(feature)
    log.info("  found %s: feature %d, %s", how, feature, record.description)
    value = STEER_TIMES_MAX * record.max_activation
    steer = FeatureIntervention(sae, (clamp(feature, value),))
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


def _report(out: Path, cache_dir: Path, sae_dir: Path, report: Path, seconds: float) -> None:
    import json

    metrics = json.loads((report.parent / "metrics.json").read_text())["saes"][sae_dir.name]
    load_sae(sae_dir)  # what is on disk (trained now or reused) still loads
    log.info("done in %.0fs. Outputs under %s:", seconds, out)
    log.info("  activations  %s   saescope.open_activations(%r)", cache_dir, str(cache_dir))
    log.info("  SAE          %s   saescope.sae.load_sae(%r)", sae_dir, str(sae_dir))
    log.info("  held-out     %s", steps.heldout_line(sae_dir))
    spliced = metrics["spliced"]
    log.info(
        "  spliced in   CE %.3f -> %.3f (delta %.3f, KL %.3f) over %s tokens, loss recovered %.1f%%",
        spliced["ce_clean"],
        spliced["ce_spliced"],
        spliced["delta_loss"],
        spliced["kl"],
        f"{spliced['tokens']:,}",
        100 * spliced["loss_recovered"],
    )
    log.info("  training log %s", sae_dir / "metrics.jsonl")
    log.info("  report       %s", report)
    log.info(
        "next: `saescope walkthrough` trains SAEs at layer %d, where the logit lens shows the "
        "model deciding, and walks through next token, lens and features on one prompt",
        WALKTHROUGH_LAYER,
    )
    log.info(
        "browse: saescope serve --index %s --sae %s --metrics %s   (then open "
        "http://127.0.0.1:8765)",
        out / "index.db",
        sae_dir,
        report.parent / "metrics.json",
    )
