"""The Welch Labs walkthrough of Gemma, on the embedded default model, written to a folder.

    python examples/walkthrough.py [--out walkthrough-out] [--sae saescope-out/saes/topk-w8192-k32]

Writes:
  prediction.md          next-token distribution for the Wikipedia prompt
  logit_lens.png / .md   the prediction forming layer by layer, with ' high', ' low',
                         ' questionable' tracked
  residual.png           the residual stream at the last token after a few layers, as pictures
                         (and the SAE's latents, sparse, next to the dense vector if --sae)
  neuron.md              a layer-6 MLP neuron's top corpus contexts (and an SAE feature's, if
                         --sae) and what clamping the neuron does to the prediction
  doubt_neuron.md        the neuron whose clamping most raises ' questionable' (found by its
                         direct logit effect, then tried), its effect and its top contexts
Everything here is computed by the run; nothing is typed by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from saescope.data import load_corpus
from saescope.interpret import logit_lens, predict
from saescope.interpret.neurons import Example, top_contexts, top_neurons
from saescope.interpret.pictures import residual_vectors
from saescope.interpret.plots import plot_logit_lens, plot_pictures
from saescope.models import load_model
from saescope.sae import load_sae
from saescope.steer import clamp_neurons

PROMPT = "The reliability of Wikipedia is very"
TARGETS = [" high", " low", " questionable"]
SITE = "layers.6.mlp_act"


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def examples_md(title: str, examples: list[Example]) -> str:
    out = [f"### {title}\n"]
    for e in examples:
        text = "".join(f"**[{t}]**" if i == e.focus else t for i, t in enumerate(e.tokens))
        out.append(f"- {e.activation:.2f}: {text!r}")
    return "\n".join(out) + "\n\n"


@torch.inference_mode()
def doubt_neuron(model, corpus, tokens: int, target: str = " questionable") -> str:
    """Among late MLP neurons, the one that most raises ``target`` when clamped to 10.

    Candidates: per layer, the 3 neurons whose down-projection column, through Gemma's
    post-MLP and final norm weights and the unembedding, most favours ``target`` over the
    model's top token. Each is clamped and the prediction re-run; the best is reported."""
    clean = predict(model, PROMPT)
    tq = model.tokenizer(target, add_special_tokens=False)["input_ids"][0]
    top_id = int(clean.probs.argmax())
    direction = (model.hf.lm_head.weight[tq] - model.hf.lm_head.weight[top_id]).float()
    direction = direction * (1 + model.hf.model.norm.weight.float())
    trials = []
    for layer in range(model.n_layers // 2, model.n_layers):
        block = model.layers[layer]
        columns = (
            block.mlp.down_proj.weight.float()
            * (1 + block.post_feedforward_layernorm.weight.float())[:, None]
        )
        for unit in (columns.t() @ direction).topk(3).indices.tolist():
            with clamp_neurons(model, f"layers.{layer}.mlp_act", {unit: 10.0}):
                trials.append((float(predict(model, PROMPT).probs[tq]), layer, unit))
    p, layer, unit = max(trials)
    site = f"layers.{layer}.mlp_act"
    md = [
        f"# The '{target.strip()}' neuron: {site}:{unit}\n",
        f"{len(trials)} candidates tried; clamped to 10 it moves p({target!r}) after "
        f"{PROMPT!r} from {float(clean.probs[tq]):.3f} to {p:.3f}.\n",
    ]
    for value in (-10.0, 10.0, 40.0):
        with clamp_neurons(model, site, {unit: value}):
            clamped = predict(model, PROMPT).top(5)
        md.append(
            f"Clamped to {value}:\n\n"
            + table(
                [
                    [f"{a!r} {x:.3f}", f"{b!r} {y:.3f}"]
                    for (a, x), (b, y) in zip(clean.top(5), clamped, strict=True)
                ],
                ["clean", "clamped"],
            )
        )
    found = top_contexts(model, site, [unit], corpus, tokens=tokens, k=12)
    md.append(examples_md(f"where it fires most in {tokens:,} corpus tokens", found[unit]))
    return "\n".join(md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="walkthrough-out")
    parser.add_argument("--sae", help="an SAE trained on layers.6.resid_post (e.g. quickstart's)")
    parser.add_argument("--tokens", type=int, default=40_000, help="corpus tokens to scan")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model("gemma-3-270m")

    top = predict(model, PROMPT).top(10)
    (out / "prediction.md").write_text(
        f"Next token after {PROMPT!r}:\n\n"
        + table([[repr(t), f"{p:.4f}"] for t, p in top], ["token", "probability"])
    )

    lens = logit_lens(model, PROMPT)
    plot_logit_lens(lens, out / "logit_lens.png", k=5)
    ids = [model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in TARGETS]
    probs, ranks = lens.track(ids)
    rows = [
        [
            stage,
            repr(lens.top(1)[s][0][0]),
            *(f"{float(probs[s, j]):.3f} (#{int(ranks[s, j])})" for j in range(len(ids))),
        ]
        for s, stage in enumerate(lens.stages)
    ]
    (out / "logit_lens.md").write_text(table(rows, ["stage", "top-1", *map(repr, TARGETS)]))

    vectors = residual_vectors(model, PROMPT, layers=[0, 3, 6, 9, 12, 17])
    pictures = dict(vectors)
    sae = load_sae(args.sae) if args.sae else None
    if sae is not None:
        pictures["SAE latents at layer 6"] = sae.encode_dense(vectors["layers.6"])
    plot_pictures(pictures, out / "residual.png", title=f"last token of {PROMPT!r}")

    corpus = load_corpus()
    # the largest positive value, the neuron this walkthrough has always shown (the README
    # quotes it); by |activation| or contribution a negative one comes first at layer 6
    units = top_neurons(model, PROMPT, SITE, k=model.site_dim(SITE), rank="activation")
    best = max(units, key=lambda u: u.activation)
    neuron, value = best.unit, best.activation
    md = [f"# Neuron {SITE}:{neuron} (its largest value on the prompt's last token: {value:.2f})\n"]
    found = top_contexts(model, SITE, [neuron], corpus, tokens=args.tokens, k=12)
    md.append(examples_md(f"top contexts in {args.tokens:,} tokens", found[neuron]))
    clean = predict(model, PROMPT).top(5)
    scale = max(e.activation for e in found[neuron])
    for factor in (-10, 10):
        with clamp_neurons(model, SITE, {neuron: factor * scale}):
            clamped = predict(model, PROMPT).top(5)
        md.append(
            f"Clamped to {factor} x its corpus max ({factor * scale:.1f}):\n\n"
            + table(
                [
                    [f"{a!r} {p:.3f}", f"{b!r} {q:.3f}"]
                    for (a, p), (b, q) in zip(clean, clamped, strict=True)
                ],
                ["clean", "clamped"],
            )
            + "\n"
        )
    if sae is not None:
        latents = sae.encode_dense(vectors["layers.6"].unsqueeze(0))[0]
        feature = int(latents.argmax())
        found = top_contexts(
            model,
            "layers.6.resid_post",
            [feature],
            corpus,
            tokens=args.tokens,
            k=12,
            encode=lambda a: sae.encode_dense(a.to(torch.float32)),
        )
        md.append(
            examples_md(
                f"SAE feature {feature} (largest on the prompt's last token)", found[feature]
            )
        )
    (out / "neuron.md").write_text("\n".join(md))
    (out / "doubt_neuron.md").write_text(doubt_neuron(model, corpus, args.tokens))
    print(f"wrote {sorted(p.name for p in out.iterdir())} to {out}")


if __name__ == "__main__":
    main()
