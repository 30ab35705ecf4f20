"""The seed walkthrough on the default model, written to docs/seed-walkthrough.md.

    python examples/seed_walkthrough.py [--out saescope-walkthrough] [--docs docs]

Builds (or reuses) what ``saescope walkthrough`` builds under OUT: a cache of
layers.13.resid_post, TopK SAEs of width 2048 and 8192 trained in one sweep, their evaluation
and indexes. Then, on "The reliability of Wikipedia is very": the next token, the logit lens and
the residual pictures layer by layer, a late-layer neuron of large output clamped both ways with
its top corpus contexts, the SAE's features on the prompt, the feature found by attribution to
' questionable' vs ' high' with its dashboard and its moderate and huge clamps, a concept
feature steering generation (rollout counts against unsteered, same seeds), a contrastive
vector against its top feature on the success-vs-loss plane, and a feature that splits across
the two widths. Every number in the document comes from this run; where the model does not show
what the seeds describe, the document says so.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import platform
import time
from pathlib import Path

import torch

import saescope.steps as steps
import saescope.walkthrough as walkthrough
from saescope.data import ContextConfig, load_corpus, pack_contexts
from saescope.interpret import logit_lens, predict
from saescope.interpret.active import active_features
from saescope.interpret.families import family_baseline, feature_families, split_features
from saescope.interpret.find import search_by_example
from saescope.interpret.neurons import Example, top_contexts, top_neurons
from saescope.interpret.pictures import clipped_values, colour_limits, residual_vectors
from saescope.interpret.plots import plot_logit_lens, plot_pictures
from saescope.interpret.query import FeatureIndex, FeatureRecord
from saescope.interpret.sources import sae_source
from saescope.models import load_model
from saescope.sae import load_sae
from saescope.steer import (
    FeatureIntervention,
    GenerationConfig,
    clamp,
    clamp_neurons,
    generate_with,
    steering_curve,
)
from saescope.steer.attribute import attribute, single_token, verify
from saescope.steer.frontier import run_frontier
from saescope.steer.interventions import intervene
from saescope.steer.measure import plot_steering
from saescope.steer.vectors import SteeringVector, contrastive_vector

PROMPT = walkthrough.PROMPT
TARGETS = [" important", " high", " low", " questionable"]
TARGET, VERSUS = " questionable", " high"
NEURON_SITE = f"layers.{walkthrough.LAYER}.mlp_act"
ROLLOUTS = GenerationConfig(max_new_tokens=24, samples=6, sample=True, seed=0)
"""Sampled continuations: 6 per prompt, 2 prompts -> 12 rollouts per condition."""
CLAMP_PROMPT_ROLLOUTS = GenerationConfig(max_new_tokens=24, samples=3, sample=True, seed=0)
MODERATE, HUGE = 2.0, 20.0
"""Clamps of the attributed feature, as multiples of its largest activation in the index."""
NEUTRAL_PROMPTS = ["My favourite thing about the weekend is", "I think that my neighbour"]
CONCEPT = "the sea"
CONCEPT_TEXTS = [
    "The ship sailed across the ocean, waves crashing against its hull.",
    "Fishermen cast their nets into the sea at dawn.",
    "The tide came in and the salty sea water covered the beach.",
    "Sailors on the deck watched the waves and the endless blue ocean.",
]
NEUTRAL_TEXTS = [
    "The train travelled across the country, wheels rattling along the track.",
    "Farmers planted their seeds in the field at dawn.",
    "The bus came in and the busy city street filled with people.",
    "Workers in the office watched the clock and the endless grey sky.",
]
VOCABULARY = [
    "sea",
    "ocean",
    "wave",
    "ship",
    "boat",
    "sail",
    "sailor",
    "tide",
    "beach",
    "shore",
    "water",
    "fish",
    "coast",
    "harbour",
    "harbor",
    "island",
    "whale",
    "marine",
]
CONCEPT_MULTIPLES = [0.0, 0.5, 1.0, 2.0]
"""Clamps of the concept feature, as multiples of its largest activation in the index."""
VECTOR_COEFS = [0.0, 2.0, 4.0, 8.0]
LOSS_CONTEXTS = 8


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", "⏎")


def context_md(e: Example) -> str:
    text = "".join(f"**[{t}]**" if i == e.focus else t for i, t in enumerate(e.tokens))
    return f"- {e.activation:.2f}: …{cell(text)}…"


def rollouts_md(texts: list[str], shown: int = 3) -> str:
    return "\n".join(f"  - …{cell(t)}" for t in texts[:shown])


def loss_batches(model, contexts: int) -> list[torch.Tensor]:
    cfg = ContextConfig(context_size=64, seed=2026)
    ids = list(itertools.islice(pack_contexts(load_corpus(), model.tokenizer, cfg), contexts))
    return list(torch.stack(ids).split(4))


def dashboard_md(r: FeatureRecord, rms: float, contexts: int = 6) -> str:
    promotes = steps.promotes_text(r.promoted, rms, 8)
    lines = [
        f"- description: {cell(r.description)}",
        f"- density {r.density:.3%}{' (DENSE)' if r.dense else ''}, largest activation "
        f"{r.max_activation:.2f}",
        f"- promotes: {cell(promotes)} ({steps.promotes_legend(rms)})",
        "- top contexts:",
        *(f"  {context_md(e)}" for e in r.top[:contexts]),
        "- typical contexts (quantile samples):",
        *(f"  {context_md(e)}" for _, e in r.samples[:: max(len(r.samples) // 4, 1)][:4]),
    ]
    return "\n".join(lines) + "\n"


def section_training(a: walkthrough.Artifacts) -> str:
    import json

    metrics = json.loads((a.report.parent / "metrics.json").read_text())["saes"]
    rows = []
    for d in (a.narrow, a.wide):
        m, h = metrics[d.name], json.loads((d / "heldout.json").read_text())
        wo = m.get("without_outliers") or {}
        rows.append(
            [
                d.name,
                f"{h['fvu']:.3f}",
                f"{wo.get('fvu', float('nan')):.3f}",
                f"{h['l0']:.1f}",
                f"{100 * h['dead_fraction']:.1f}%",
                f"{m['spliced']['ce_clean']:.3f} -> {m['spliced']['ce_spliced']:.3f}",
                f"{100 * m['spliced']['loss_recovered']:.1f}%",
            ]
        )
    return (
        "## 0. The SAEs\n\n"
        f"`saescope walkthrough` captured `{walkthrough.SITE}` (why layer "
        f"{walkthrough.LAYER}: `benchmarks/late_layer.md`) and trained TopK SAEs of widths "
        f"{walkthrough.WIDTHS} (k = {walkthrough.K}, {walkthrough.EPOCHS} epochs) in one sweep. "
        "Held-out numbers:\n\n"
        + table(
            [
                "SAE",
                "FVU",
                "FVU w/o outliers",
                "L0",
                "silent on held-out",
                "CE clean -> spliced",
                "loss recovered",
            ],
            rows,
        )
    )


def section_next_and_lens(model, docs: Path) -> str:
    top = predict(model, PROMPT).top(8)
    lens = logit_lens(model, PROMPT)
    ids = {t: single_token(model, t) for t in TARGETS}
    plot_logit_lens(lens, docs / "seed-lens.png", targets=ids)
    probs, ranks = lens.track(list(ids.values()))
    rows = []
    for i, stage in enumerate(lens.stages):
        if not (stage.endswith(".mlp") or i == 0):
            continue
        top3 = ", ".join(f"{t!r} {p:.2f}" for t, p in lens.top(3)[i])
        tracked = [f"{int(ranks[i, j])} ({float(probs[i, j]):.3f})" for j in range(len(ids))]
        rows.append([cell(stage), cell(top3), *tracked])
    n = model.n_layers
    vectors = residual_vectors(model, PROMPT, layers=list(range(n)))
    limits = colour_limits(vectors)
    plot_pictures(vectors, docs / "seed-pictures.png", f"{PROMPT!r}, last token", limits)
    clipped = clipped_values(vectors, limits)
    big = sorted({d for v in clipped.values() for d, _ in v[:1]})
    return (
        "## 1. The next token\n\n"
        f"`saescope predict --prompt {PROMPT!r}`\n\n"
        + table(["token", "p"], [[repr(t), f"{p:.3f}"] for t, p in top])
        + "\n## 2. The logit lens, layer by layer\n\n"
        f'`saescope lens --prompt {PROMPT!r} --targets "{",".join(TARGETS)}" --plot '
        "seed-lens.png`: the residual stream at the last token read through the final norm and "
        "the unembedding after each layer (rank 1 = top; float32):\n\n"
        + table(["after", "top 3", *(f"{t!r} rank (p)" for t in TARGETS)], rows)
        + "\n![logit lens](seed-lens.png)\n\n"
        "`saescope pictures --prompt ...`: the residual vector (640 dims as 20 x 32) after each "
        f"layer, on one colour scale clipped at the 99th percentile of |value| "
        f"(±{next(iter(limits.values())):.0f}); the dimensions that most exceed it: "
        f"{', '.join(str(d) for d in big)}.\n\n![residual pictures](seed-pictures.png)\n\n"
    )


def section_neuron(model) -> str:
    [first, *_] = top_neurons(model, PROMPT, NEURON_SITE, k=5)
    unit, act = first.unit, first.activation
    t_id = single_token(model, TARGET)
    rows = []
    clean = predict(model, PROMPT)
    rows.append(
        [
            "clean",
            f"{act:.2f}",
            cell(", ".join(f"{t!r} {p:.2f}" for t, p in clean.top(4))),
            f"{float(clean.probs[t_id]):.3f}",
        ]
    )
    for value in (-10 * abs(act), 10 * abs(act)):
        with clamp_neurons(model, NEURON_SITE, {unit: value}):
            p = predict(model, PROMPT)
        top = ", ".join(f"{t!r} {q:.2f}" for t, q in p.top(4))
        rows.append(
            [f"clamped to {value:+.1f}", f"{value:.2f}", cell(top), f"{float(p.probs[t_id]):.3f}"]
        )
    contexts = top_contexts(
        model, NEURON_SITE, [unit], load_corpus(), 40_000, k=10, progress=False
    )[unit]
    peaks = {e.tokens[e.focus] for e in contexts}
    return (
        f"## 3. A late-layer neuron\n\n`saescope neurons --prompt {PROMPT!r} --site "
        f"{NEURON_SITE}` ranks the MLP neurons at the last token by output contribution "
        f"(|activation| x the norm of its output weights); the first is {unit} (activation "
        f"{act:.2f}, contribution {first.contribution:.2f}). Clamped at every token to ±10x "
        "its activation here:\n\n"
        + table(["", "neuron", "next tokens", f"p({TARGET!r})"], rows)
        + f"\nWhere it is largest in the first 40,000 corpus tokens (`saescope neurons --site "
        f"{NEURON_SITE} --unit {unit} --contexts 10`): its 10 top contexts peak on "
        f"{len(peaks)} distinct tokens ({', '.join(repr(t) for t in sorted(peaks))}).\n\n"
        + "\n".join(context_md(e) for e in contexts)
        + "\n\n"
    )


def section_features(model, a: walkthrough.Artifacts) -> str:
    source = sae_source(a.narrow)
    [last] = active_features(model, source, PROMPT, 8)[-1:]
    with FeatureIndex(a.narrow_index) as index:
        rows = []
        for f, v in last.features:
            r = index.feature(f)
            rows.append(
                [
                    str(f),
                    f"{v:.2f}",
                    f"{r.density:.2%}" + (" DENSE" if r.dense else ""),
                    cell(r.description),
                ]
            )
    return (
        f"## 4. The SAE's features on the prompt\n\n`saescope features --sae {a.narrow.name} "
        f"--index ... --prompt {PROMPT!r} --last`: the largest features at {last.token!r}:\n\n"
        + table(["feature", "activation", "density", "description"], rows)
        + "\n"
    )


def section_attribution(model, a: walkthrough.Artifacts) -> tuple[str, int]:
    sae = load_sae(a.narrow)
    result = attribute(model, PROMPT, TARGET, VERSUS, sae=sae, top=10)
    checked = {v.unit: v for v in verify(model, result, [u.unit for u in result.units[:6]])}
    with FeatureIndex(a.narrow_index) as index:
        rows = []
        for u in result.units:
            r = index.feature(u.unit)
            v = checked.get(u.unit)
            rows.append(
                [
                    str(u.unit),
                    f"{u.attribution:+.3f}",
                    "" if v is None else f"{v.ablation_delta:+.3f}",
                    f"{r.density:.2%}" + (" DENSE" if r.dense else ""),
                    cell(r.description),
                ]
            )
        # The feature that raises ' questionable' over ' high' (ablating it lowers m) and is
        # not dense: the one the doubt demo is about. Verified ones first.
        candidates = [
            u
            for u in result.units
            if u.attribution > 0
            and not index.feature(u.unit).dense
            and (u.unit not in checked or checked[u.unit].ablation_delta < 0)
        ]
        chosen = candidates[0].unit if candidates else result.units[0].unit
        record = index.feature(chosen)
    on_prompt = next(abs(u.peak) for u in result.units if u.unit == chosen)
    t_id = single_token(model, TARGET)
    lines = [
        f"## 5. The feature that matters: attribution to {TARGET!r} vs {VERSUS!r}\n",
        f"`saescope attribute --sae {a.narrow.name} --prompt {PROMPT!r} --target {TARGET!r} "
        f"--versus {VERSUS!r}`: m = logit[{TARGET!r}] - logit[{VERSUS!r}] = {result.metric:.3f} "
        f"(p({TARGET!r}) = {result.probability:.4f}); features ranked by activation x gradient "
        "summed over the prompt; the top 6 checked by zero-ablating them at every token "
        "(attribution predicts ablation Δm = -attribution):\n",
        table(["feature", "attribution", "ablation Δm", "density", "description"], rows),
        f"Chosen: feature {chosen}, the first non-dense feature that raises m"
        + (" (none qualified: the top feature is shown)" if not candidates else "")
        + f". Its dashboard (`saescope show --index ... {chosen}`):\n",
        dashboard_md(record, steps.final_rms(model)),
        f"Clamped at every token to {MODERATE:g}x its largest activation on the prompt "
        f"({on_prompt:.2f}), and to {MODERATE:g}x and {HUGE:g}x its largest activation in the "
        f"index ({record.max_activation:.2f}); sampled continuations with the same seeds:\n",
    ]
    rows = []
    texts = {}
    levels = [
        ("clean", None),
        (f"{MODERATE:g}x its peak on the prompt", MODERATE * on_prompt),
        (f"{MODERATE:g}x its max in the index", MODERATE * record.max_activation),
        (f"{HUGE:g}x its max in the index", HUGE * record.max_activation),
    ]
    for label, value in levels:
        edits = [] if value is None else [FeatureIntervention(sae, (clamp(chosen, value),))]
        with intervene(model, edits):
            p = predict(model, PROMPT)
        [roll] = generate_with(model, PROMPT, edits, CLAMP_PROMPT_ROLLOUTS)
        name = label if value is None else f"{label} ({value:.1f})"
        rows.append(
            [
                name,
                f"{float(p.probs[t_id]):.4f}",
                cell(", ".join(f"{t!r} {q:.2f}" for t, q in p.top(4))),
            ]
        )
        texts[name] = roll.texts
    lines.append(table(["clamp", f"p({TARGET!r})", "next tokens"], rows))
    for name, t in texts.items():
        lines.append(f"- {name}:\n{rollouts_md(t)}")
    return "\n".join(lines) + "\n\n", chosen


def _concept_feature(model, a: walkthrough.Artifacts) -> tuple[int, FeatureRecord, list]:
    with FeatureIndex(a.narrow_index) as index:
        hits = search_by_example(model, load_sae(a.narrow), index, CONCEPT_TEXTS, NEUTRAL_TEXTS, 5)
        chosen = next((h for h in hits if not h.dense), hits[0])
        return chosen.feature, index.feature(chosen.feature), hits


def section_concept(model, a: walkthrough.Artifacts, batches, docs: Path) -> tuple[str, int]:
    feature, record, hits = _concept_feature(model, a)
    sae = load_sae(a.narrow)
    rows = [
        [
            str(h.feature),
            f"{h.score:.1f}",
            f"{h.texts}/{len(CONCEPT_TEXTS)}",
            f"{h.density:.2%}",
            cell(", ".join(f"{t!r}" for t, _ in h.tokens)),
        ]
        for h in hits
    ]
    peak = record.max_activation

    def make(c: float):
        return [FeatureIntervention(sae, (clamp(feature, c * peak),))] if c else []

    points = steering_curve(
        model, make, CONCEPT_MULTIPLES, NEUTRAL_PROMPTS, VOCABULARY, batches, ROLLOUTS
    )
    n = len(NEUTRAL_PROMPTS) * ROLLOUTS.samples
    curve = [
        [
            f"{p.coefficient:g}x ({p.coefficient * peak:.1f})",
            f"{round(p.success * n)}/{n}",
            f"{p.loss:.3f}",
            cell(p.texts[0][:90]),
        ]
        for p in points
    ]
    return (
        f"## 6. A concept feature steering generation: {CONCEPT}\n\n"
        f"`saescope search --index ... --sae {a.narrow.name} --text ... --contrast ...` with "
        f"{len(CONCEPT_TEXTS)} sentences about {CONCEPT} against {len(NEUTRAL_TEXTS)} matched "
        "neutral ones:\n\n"
        + table(["feature", "score", "texts", "density", "fires on"], rows)
        + f"\nFeature {feature} ({cell(record.description)}), clamped at every token from "
        f"{NEUTRAL_PROMPTS}: rollouts (of {n}, the same seeds in every row) that use a word of "
        f"{CONCEPT}'s vocabulary, and the next-token loss on {LOSS_CONTEXTS} corpus contexts:\n\n"
        + table(["clamp (x max)", "on topic", "loss", "first rollout"], curve)
        + "\n",
        feature,
    )


def section_vector(model, a: walkthrough.Artifacts, batches, docs: Path) -> str:
    site = walkthrough.SITE
    vec = contrastive_vector(model, site, CONCEPT_TEXTS, NEUTRAL_TEXTS, reduce="mean")
    steering = SteeringVector(
        vec, site, model.name, "mean", tuple(CONCEPT_TEXTS), tuple(NEUTRAL_TEXTS)
    )
    sae = load_sae(a.narrow)
    f = run_frontier(
        model, steering, sae, NEUTRAL_PROMPTS, VOCABULARY, batches, VECTOR_COEFS, config=ROLLOUTS
    )
    plot_steering(
        f.curves, docs / "seed-frontier.png", f.clean_loss, f"{CONCEPT}: vector vs its top feature"
    )
    rows = []
    for name, points in f.curves.items():
        for p in points:
            rows.append(
                [
                    cell(name),
                    f"{p.coefficient:g}",
                    f"{round(p.success * f.rollouts)}/{f.rollouts}",
                    f"{p.loss - f.clean_loss:+.3f}",
                ]
            )
    top = f.decomposition.top(3)
    parts = ", ".join(f"{feat} (contribution {share:.2f})" for feat, _, share in top)
    return (
        "## 7. A contrastive steering vector against its top feature\n\n"
        f"`saescope vector --site {site} --reduce mean --positive-file sea.txt --negative-file "
        f"neutral.txt --sae ...`: the mean over the {len(CONCEPT_TEXTS)} sea sentences minus "
        f"the neutral ones, norm {float(vec.norm()):.0f}. Its largest SAE terms (orthogonal "
        f"matching pursuit): {parts}. `saescope frontier` adds, at each coefficient, the vector, its "
        "top feature's part (rescaled to the vector's norm) and the vector with that feature "
        f"projected out (GDM's method); {f.rollouts} rollouts each, loss increase over the clean "
        f"{f.clean_loss:.3f}:\n\n"
        + table(["condition", "coefficient", "on topic", "Δ loss"], rows)
        + "\n![success vs loss](seed-frontier.png)\n\n"
    )


def section_families(a: walkthrough.Artifacts, features: list[int]) -> str:
    narrow, wide = load_sae(a.narrow), load_sae(a.wide)
    base = family_baseline(narrow, wide)
    families = feature_families(narrow, wide)
    split = split_features(families)
    shown = [f for f in families if f.parent in features] + split[:3]
    lines = [
        "## 8. Feature splitting across widths\n",
        f"`saescope families --narrow {a.narrow.name} --wide {a.wide.name}`: every feature of "
        f"the {narrow.cfg.d_sae}-wide SAE against the {wide.cfg.d_sae}-wide one (each SAE with "
        "its own initialisation) and against a shuffled copy of the wide decoder (each "
        "dimension's values permuted across rows):\n",
        table(
            [
                "decoder",
                "best cos p10 / p50 / p90",
                "best >= 0.5",
                ">= 2 children >= 0.5",
                "same index",
            ],
            [
                [
                    name,
                    " / ".join(f"{s.best_cosine_quantiles[q]:.2f}" for q in ("p10", "p50", "p90")),
                    f"{s.matched_fraction:.1%}",
                    f"{s.split_fraction:.1%}",
                    f"{s.same_index_fraction:.2%}",
                ]
                for name, s in (("wide", base.real), ("shuffled", base.shuffled))
            ],
        ),
        f"{base.above_chance_fraction:.1%} of the narrow features match a wide one more closely "
        "than any feature matches the shuffled decoder.\n",
    ]
    with FeatureIndex(a.narrow_index) as ni, FeatureIndex(a.wide_index) as wi:
        for fam in shown:
            lines.append(f"- narrow {fam.parent} ({cell(ni.feature(fam.parent).description)}):")
            for child, cos in fam.children[:5]:
                lines.append(
                    f"  - wide {child}, cosine {cos:.2f}: {cell(wi.feature(child).description)}"
                )
    return "\n".join(lines) + "\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("saescope-walkthrough"))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    model = load_model()
    artifacts = walkthrough.build(args.out, lambda: model)
    args.docs.mkdir(parents=True, exist_ok=True)
    batches = loss_batches(model, LOSS_CONTEXTS)
    parts = [
        section_training(artifacts),
        section_next_and_lens(model, args.docs),
        section_neuron(model),
        section_features(model, artifacts),
    ]
    text, doubt = section_attribution(model, artifacts)
    parts.append(text)
    text, concept = section_concept(model, artifacts, batches, args.docs)
    parts.append(text)
    parts.append(section_vector(model, artifacts, batches, args.docs))
    parts.append(section_families(artifacts, [doubt, concept]))
    seconds = time.perf_counter() - start
    head = (
        "# The seed walkthrough on Gemma 3 270M\n\n"
        f"Written by `python examples/seed_walkthrough.py` ({time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads, {seconds:.0f} s with the "
        "artifacts already built); nothing here is typed by hand. Prompt: "
        f"{PROMPT!r}.\n\n"
    )
    (args.docs / "seed-walkthrough.md").write_text(head + "".join(parts))
    logging.info("wrote %s", args.docs / "seed-walkthrough.md")


if __name__ == "__main__":
    main()
