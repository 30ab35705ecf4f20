"""``saescope walkthrough``: the seed walkthrough (issue #13) on the default model, at the layer
where the logit lens shows the model deciding.

``build`` makes the artifacts, each reused (or resumed) from an earlier run: a cache of
``layers.13.resid_post``, two TopK SAEs of it trained in one sweep (a narrow one and one 4x
wider, for feature splitting), their evaluation, and the feature index of each. Then each
section of ``SECTIONS`` reads the artifacts and shows one step of the walkthrough on one prompt;
a later section is one more function ``(Walkthrough) -> result`` appended there.

Why layer 13 of 18: ``benchmarks/late_layer.md``. Over eight prompts, the lens rank of the
model's final top token falls from a median of 219 after layer 10 to 32 after layer 12 and 4
after layer 13 (KL(final || lens) 4.3, 5.2, then 2.4 nats): the model decides over layers
10-13, and from 13 on the lens reads the answer while four layers remain for a feature's
clamp to act through.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from saescope import steps
from saescope.models import DEFAULT_MODEL, LanguageModel, load_model
from saescope.steps import SHARD_ROWS

log = logging.getLogger(__name__)

LAYER = 13
SITE = f"layers.{LAYER}.resid_post"
TOKENS = 4 * SHARD_ROWS
"""Training rows captured (one more shard is held out)."""
WIDTHS = (2048, 8192)
"""The narrow SAE and one 4x wider, trained in one sweep: the pair for feature families."""
K = 32
EPOCHS = 3
LOSS_TOKENS = 4_096
INDEX_TOKENS = 131_072
PROMPT = "The reliability of Wikipedia is very"
SHOWN = 8
"""Features shown per SAE on the prompt's last token; tokens per stage in the lens."""


@dataclass(frozen=True)
class Artifacts:
    """What ``build`` leaves under ``out``."""

    out: Path
    cache: Path
    """The activation cache of ``SITE`` (last shard held out)."""
    narrow: Path
    wide: Path
    """SAE directories (``load_sae``)."""
    report: Path
    """``report.html``; ``metrics.json`` beside it scores both SAEs."""
    narrow_index: Path
    wide_index: Path
    """Feature indexes (``FeatureIndex``), one per SAE."""


@dataclass(frozen=True)
class Walkthrough:
    """What every section reads."""

    model: LanguageModel
    artifacts: Artifacts
    prompt: str

    @functools.cached_property
    def final_rms(self) -> float:
        return steps.final_rms(self.model)


def build(out: Path, model: Callable[[], LanguageModel]) -> Artifacts:
    """Capture, train both widths, evaluate, index: each step reused from disk where done."""
    log.info("[1/4] capture %s of %s (~%s tokens)", SITE, DEFAULT_MODEL, f"{TOKENS:,}")
    cache = steps.cached_activations(out / "activations", model, SITE, TOKENS)
    log.info("[2/4] train")
    narrow, wide = steps.trained_saes(out / "saes", cache, SITE, WIDTHS, K, EPOCHS)
    log.info("[3/4] evaluate both (spliced loss on %s tokens)", f"{LOSS_TOKENS:,}")
    report = steps.evaluation([narrow, wide], out / "report", cache, model, LOSS_TOKENS)
    log.info("[4/4] index both over %s tokens", f"{INDEX_TOKENS:,}")
    indexes = [
        steps.feature_index(out / f"index-{d.name}.db", d, cache, model(), INDEX_TOKENS)
        for d in (narrow, wide)
    ]
    return Artifacts(out, cache.root, narrow, wide, report, *indexes)


def next_token(w: Walkthrough) -> list[tuple[str, float]]:
    """The model's most probable next tokens after the prompt."""
    from saescope.interpret.lens import predict

    top = predict(w.model, w.prompt).top(SHOWN)
    log.info("next token after %r: %s", w.prompt, ", ".join(f"{t!r} {p:.3f}" for t, p in top))
    return top


def lens(w: Walkthrough) -> list[list[tuple[str, float]]]:
    """The logit lens at the prompt's last token after each layer: its top tokens, and the
    probability of the token the model finally ranks first."""
    from saescope.interpret.lens import logit_lens

    result = logit_lens(w.model, w.prompt)
    after = [i for i, s in enumerate(result.stages) if s.endswith(".mlp")]  # resid_post
    answer = int(result.probs[-1].argmax())
    decode = w.model.tokenizer.decode
    tops = result.top(3)
    log.info("logit lens at %r (resid_post of each layer; p = P(%r)):", result.prompt_tokens[-1],
             decode([answer]))  # fmt: skip
    rows = []
    for layer, stage in enumerate(after):
        rows.append(tops[stage])
        mark = "  <- SAE site" if layer == LAYER else ""
        shown = ", ".join(f"{t!r} {p:.2f}" for t, p in tops[stage])
        p = float(result.probs[stage, answer])
        log.info("  layer %2d  p %.1e  %s%s", layer, p, shown, mark)
    return rows


def sae_features(w: Walkthrough) -> dict[str, list[tuple[int, float]]]:
    """Each SAE's largest features on the prompt's last token, with their index descriptions,
    densities (dense ones flagged) and the tokens they promote."""
    from saescope.interpret.active import active_features
    from saescope.interpret.query import FeatureIndex
    from saescope.interpret.sources import sae_source

    shown = {}
    a = w.artifacts
    for sae_dir, path in ((a.narrow, a.narrow_index), (a.wide, a.wide_index)):
        source = sae_source(sae_dir)
        [last] = active_features(w.model, source, w.prompt, SHOWN)[-1:]
        log.info("%s features at %r (the last token of %r):", sae_dir.name, last.token, w.prompt)
        with FeatureIndex(path) as index:
            for feature, value in last.features:
                r = index.feature(feature)
                dense = "  DENSE" if r.dense else ""
                log.info(
                    "  %5d  act %.2f  density %.3f%%%s  peaks on %s; promotes %s",
                    feature, value, 100 * r.density, dense, r.description,
                    steps.promotes_text(r.promoted, w.final_rms),
                )  # fmt: skip
        log.info("  more: saescope show --index %s FEATURE", path)
        shown[sae_dir.name] = last.features
    log.info("  (%s)", steps.promotes_legend(w.final_rms))
    return shown


SECTIONS: list[Callable[[Walkthrough], object]] = [next_token, lens, sae_features]
"""The walkthrough's steps on the prompt, in order; each reads the artifacts, logs, and returns
what it found (for a script that writes the document)."""


def run_walkthrough(out: Path, prompt: str = PROMPT) -> dict[str, object]:
    """Build (or reuse) the artifacts under ``out``, then run every section on ``prompt``;
    returns each section's result by its function name."""
    start = time.perf_counter()
    model = functools.cache(lambda: load_model(DEFAULT_MODEL))
    artifacts = build(out, model)
    built = time.perf_counter() - start
    w = Walkthrough(model(), artifacts, prompt)
    results = {section.__name__: section(w) for section in SECTIONS}
    _summary(artifacts, built, time.perf_counter() - start)
    return results


def _summary(a: Artifacts, built: float, seconds: float) -> None:
    import json

    metrics = json.loads((a.report.parent / "metrics.json").read_text())["saes"]
    log.info("done in %.0fs (artifacts %.0fs). Outputs under %s:", seconds, built, a.out)
    log.info("  activations  %s", a.cache)
    for sae_dir, index in ((a.narrow, a.narrow_index), (a.wide, a.wide_index)):
        spliced = metrics[sae_dir.name]["spliced"]
        log.info("  SAE          %s", sae_dir)
        log.info("    held-out   %s", steps.heldout_line(sae_dir))
        log.info(
            "    spliced in CE %.3f -> %.3f (KL %.3f) over %s tokens, loss recovered %.1f%%",
            spliced["ce_clean"], spliced["ce_spliced"], spliced["kl"], f"{spliced['tokens']:,}",
            100 * spliced["loss_recovered"],
        )  # fmt: skip
        log.info("    index      %s", index)
    log.info("  report       %s", a.report)
