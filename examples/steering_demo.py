"""Steering the default model towards a concept with one SAE feature, against a steering vector.

    python examples/steering_demo.py [--sae saescope-out/saes/topk-w8192-k32] [--out docs]

1. Find the concept's feature: encode a few sentences about the concept and ordinary corpus
   text with the SAE (layers.6.resid_post); among latents that fire on under 2% of corpus
   tokens, take the one whose mean activation rises most on the concept sentences. Show what
   it promotes through the unembedding and where it fires most in the corpus.
2. Build the contrastive steering vector at the same site: mean activation over the concept
   sentences minus over matched neutral sentences (Turner et al. 2023; mean over tokens).
   Decompose it into SAE features.
3. Measure (GDM's methodology) for a range of coefficients: the fraction of sampled rollouts
   from neutral prompts that use the concept's words, and the cross-entropy on corpus
   text with the intervention applied. Methods: clamping the feature at every token, adding the
   contrastive vector, and the vector with the feature projected out.
4. Write OUT/steering-demo.md and OUT/steering-pareto.png. Nothing in them is typed by hand.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import platform
import time
from pathlib import Path

import torch

from saescope.data import ContextConfig, keep_positions, load_corpus, pack_contexts
from saescope.interpret.lens import unembed
from saescope.models import load_model, run_with_cache
from saescope.sae import load_sae
from saescope.steer import (
    FeatureIntervention,
    GenerationConfig,
    VectorIntervention,
    clamp,
    contrastive_vector,
    decompose,
    plot_steering,
    project_out,
    steered_loss,
    steering_curve,
)

SITE = "layers.6.resid_post"
CONCEPT = "the sea"
CONCEPT_TEXTS = [
    "The ship sailed across the ocean, waves crashing against its hull.",
    "Fishermen cast their nets into the sea at dawn.",
    "The tide came in and the salty sea water covered the beach.",
    "Sailors on the deck watched the waves and the endless blue ocean.",
    "Whales and dolphins swim in the deep waters of the Pacific Ocean.",
    "A storm at sea tossed the boat on the high waves.",
    "The lighthouse guided ships safely into the harbour across the bay.",
    "We walked along the shore as seagulls flew over the surf.",
]
NEUTRAL_TEXTS = [
    "The train travelled across the country, wheels rattling along the track.",
    "Farmers planted their seeds in the field at dawn.",
    "The evening came and the warm kitchen light filled the house.",
    "Workers in the office watched the clock and the endless grey screens.",
    "Horses and cattle graze in the wide fields of the Great Plains.",
    "A storm in the city knocked the signs off the tall buildings.",
    "The teacher guided the children safely into the school across the road.",
    "We walked along the street as pigeons flew over the market.",
]
VOCABULARY = [
    "sea", "ocean", "wave", "tide", "ship", "boat", "sail", "sailor", "sailing", "beach",
    "shore", "coast", "coastal", "marine", "maritime", "harbour", "harbor", "seaside",
    "whale", "dolphin", "fish", "fishing", "fisherman", "fishermen", "underwater", "naval",
    "navy", "surf", "seagull", "island", "water", "waters", "swim", "swimming", "lighthouse",
    "river", "lake", "stream", "flood", "drown", "drowned", "cruise", "voyage", "vessel",
    "fleet", "pirate", "submarine", "anchor", "aboard", "ashore", "sand", "atlantic",
    "pacific", "mediterranean",
]  # fmt: skip
PROMPTS = [
    "I think that",
    "My favourite thing about the weekend is",
    "Yesterday afternoon, my friend and I",
    "Here is a short story:",
]
FEATURE_CLAMPS = [0.0, 1.0, 2.0, 3.0, 4.0, 6.0]
VECTOR_COEFFICIENTS = [0.0, 1.0, 2.0, 3.0, 4.0, 6.0]
PROJECTED_COEFFICIENTS = [0.0, 2.0, 4.0, 6.0]


@torch.inference_mode()
def find_feature(model, sae, corpus_ids: torch.Tensor) -> tuple[int, list[str]]:
    """The concept feature (step 1) and a markdown description of the candidates."""
    base = torch.zeros(sae.cfg.d_sae)
    fired = torch.zeros(sae.cfg.d_sae)
    rows = 0
    corpus_latents = []
    for batch in corpus_ids.split(8):
        acts = run_with_cache(model, batch, [SITE])[SITE].float()
        z = sae.encode_dense(acts)  # (B, T, d_sae)
        keep = keep_positions(batch, model.tokenizer)
        z[~keep] = 0
        corpus_latents.append(z)
        base += z[keep].sum(0)
        fired += (z[keep] > 0).sum(0)
        rows += int(keep.sum())
    base, fired = base / rows, fired / rows
    enc = model.tokenizer(CONCEPT_TEXTS, return_tensors="pt", padding=True)
    acts = run_with_cache(model, enc["input_ids"], [SITE], attention_mask=enc["attention_mask"])
    keep = keep_positions(enc["input_ids"], model.tokenizer, attention_mask=enc["attention_mask"])
    concept = sae.encode_dense(acts[SITE][keep].float())  # (N, d_sae)
    score = concept.mean(0) - base
    score[fired >= 0.02] = float("-inf")
    top = score.topk(5).indices.tolist()
    lines = [
        "| feature | mean on concept text | mean on corpus | corpus firing rate | promotes |",
        "|---|---|---|---|---|",
    ]
    for f in top:
        promoted = unembed(model, sae.W_dec[f].detach()).topk(8).indices
        words = ", ".join(repr(model.tokenizer.decode([int(t)])) for t in promoted)
        lines.append(
            f"| {f} | {concept[:, f].mean():.2f} (max {concept[:, f].max():.2f}) | "
            f"{base[f]:.3f} | {fired[f]:.2%} | {words} |"
        )
    feature = top[0]
    lines += ["", f"Where feature {feature} fires most in {rows:,} corpus tokens:", ""]
    z = torch.cat(corpus_latents)[..., feature]  # (contexts, T)
    for flat in z.reshape(-1).topk(5).indices.tolist():
        c, t = divmod(flat, z.shape[1])
        ids = corpus_ids[c]
        before = model.tokenizer.decode(ids[max(1, t - 12) : t])
        token = model.tokenizer.decode(ids[t : t + 1])
        after = model.tokenizer.decode(ids[t + 1 : t + 5])
        text = f"{before}**[{token}]**{after}".replace("\n", " ").replace("|", "/")
        lines.append(f"- {z[c, t]:.2f}: ...{text}...")
    return feature, lines


def held_out(model, contexts: int) -> list[torch.Tensor]:
    cfg = ContextConfig(context_size=128, seed=2026)
    ids = list(itertools.islice(pack_contexts(load_corpus(), model.tokenizer, cfg), contexts))
    return list(torch.stack(ids).split(4))


def curve_table(name: str, points, clean_loss: float) -> list[str]:
    lines = [
        f"### {name}",
        "",
        "| coefficient | success | loss (clean " + f"{clean_loss:.3f}) | first rollout |",
        "|---|---|---|---|",
    ]
    for p in points:
        text = p.texts[0].replace("\n", " ").replace("|", "/")[:160]
        lines.append(f"| {p.coefficient:g} | {p.success:.2f} | {p.loss:.3f} | {text!r} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sae", default="saescope-out/saes/topk-w8192-k32")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--samples", type=int, default=4, help="rollouts per prompt and point")
    parser.add_argument("--max-new", type=int, default=32)
    parser.add_argument(
        "--loss-contexts", type=int, default=6, help="128-token corpus contexts for the loss"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    model = load_model()
    sae = load_sae(args.sae)
    corpus_ids = torch.stack(
        list(itertools.islice(pack_contexts(load_corpus(), model.tokenizer, ContextConfig()), 48))
    )
    feature, candidates = find_feature(model, sae, corpus_ids)
    vector = contrastive_vector(model, SITE, CONCEPT_TEXTS, NEUTRAL_TEXTS)
    parts = decompose(vector, sae, k=8)
    without = project_out(vector, sae, [feature])
    batches = held_out(model, args.loss_contexts)
    clean_loss = steered_loss(model, [], batches)
    config = GenerationConfig(max_new_tokens=args.max_new, samples=args.samples, sample=True)
    measure = lambda make, cs: steering_curve(  # noqa: E731
        model, make, cs, PROMPTS, VOCABULARY, batches, config
    )
    curves = {
        f"clamp feature {feature}": measure(
            lambda c: [FeatureIntervention(sae, (clamp(feature, c),))], FEATURE_CLAMPS
        ),
        "contrastive vector": measure(
            lambda c: [VectorIntervention(SITE, vector, c)], VECTOR_COEFFICIENTS
        ),
        f"vector without feature {feature}": measure(
            lambda c: [VectorIntervention(SITE, without, c)], PROJECTED_COEFFICIENTS
        ),
    }
    out = Path(args.out)
    png = plot_steering(
        curves, out / "steering-pareto.png", clean_loss, title=f"steering towards {CONCEPT}"
    )
    W = sae.W_dec.detach()
    md = [
        f"# Steering Gemma 3 270M towards {CONCEPT} with one SAE feature",
        "",
        "Written by `python examples/steering_demo.py` "
        f"({time.strftime('%Y-%m-%d')}, {platform.machine()} CPU, {torch.get_num_threads()} "
        f"threads, {time.perf_counter() - start:.0f} s); nothing here is typed by hand.",
        f"SAE: `{args.sae}` (TopK, {sae.cfg.d_sae} latents, k={sae.cfg.k}) at `{SITE}`.",
        "",
        "## 1. The feature",
        "",
        f"Latents firing on under 2% of {corpus_ids.numel():,} corpus tokens, ranked by how much "
        f"more they fire on {len(CONCEPT_TEXTS)} sentences about {CONCEPT} than on the corpus:",
        "",
        *candidates,
        "",
        "## 2. The contrastive steering vector",
        "",
        f"Mean activation over the sentences about {CONCEPT} minus over {len(NEUTRAL_TEXTS)} matched "
        f"neutral ones (BOS excluded): norm {vector.norm():.0f} (feature {feature}'s decoder "
        f"row: {W[feature].norm():.0f}; a typical token's activation: ~3,400). Its "
        f"decomposition into SAE decoder rows (orthogonal matching pursuit, 8 rows) explains "
        f"{parts.explained:.0%} of its squared norm:",
        "",
        "| feature | coefficient | share of the vector |",
        "|---|---|---|",
        *[f"| {f} | {c:.2f} | {s:.1%} |" for f, c, s in parts.top(8)],
        "",
        f"Cosine between the vector and feature {feature}'s decoder row: "
        f"{torch.cosine_similarity(vector, W[feature], dim=0):.2f}.",
        "",
        "## 3. Success against loss",
        "",
        f"Success: fraction of {len(PROMPTS) * args.samples} sampled rollouts ({args.samples} "
        f"per prompt, {args.max_new} tokens, temperature 1, the same seed everywhere) from "
        f"{PROMPTS} containing one of {len(VOCABULARY)} sea words ({', '.join(VOCABULARY[:8])}, "
        f"...); with {len(PROMPTS) * args.samples} rollouts a fraction's standard error is up to "
        f"{0.5 / (len(PROMPTS) * args.samples) ** 0.5:.2f}. Loss: cross-entropy on "
        f"{args.loss_contexts} 128-token contexts of the "
        "default corpus (shuffled with seed 2026) with the intervention applied at every non-BOS "
        "token (error term kept). "
        "Clamps are in the SAE's latent units; vector coefficients multiply the vector above.",
        "",
        f"![success vs loss]({png.name})",
        "",
    ]
    for name, points in curves.items():
        md += curve_table(name, points, clean_loss)
    md += [
        "Reproduce one row from the command line:",
        "",
        "```",
        f'saescope steer --sae {args.sae} --prompt "{PROMPTS[0]}" --clamp {feature}=3 '
        "--samples 4 --max-new 32",
        f'saescope steer --sae {args.sae} --prompt "{PROMPTS[0]}" --sweep {feature}=0,1,2,3,4,6',
        "```",
        "",
    ]
    (out / "steering-demo.md").write_text("\n".join(md))
    print(f"wrote {out / 'steering-demo.md'} and {png}")


if __name__ == "__main__":
    main()
