"""Auto-interp on the quickstart SAE against raw neurons: are SAE features more interpretable?

Builds two format-3 indexes (with held-out sets): the quickstart SAE's features over its
activation cache, and the raw neurons of ``layers.6.mlp_act`` run live on the default corpus;
picks ``--features`` random live features of each; explains them with the explainer, scores
every explanation and both baselines (peak tokens, a random other feature's explanation) by
detection, fuzzing and simulation with the scorer; writes ``docs/auto-interp.md`` with the
explainer and scorer named, the mean scores with bootstrap intervals over features, the
unparsed answers, the wall time and the tokens used. ``--setup-only`` builds the indexes and
picks the features, with no LLM call. Every step resumes (the indexes are reused, explain and
score skip what is done).

    python examples/autointerp_study.py --qs /work/runs/qs --out /work/runs/explain/study
    python examples/autointerp_study.py ... --llm MODEL --api-base http://localhost:8000/v1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from saescope.interpret import store
from saescope.interpret.build import index_features
from saescope.interpret.explain import ExplainConfig, explain_features
from saescope.interpret.query import FeatureIndex
from saescope.interpret.scoring import METHODS, ScoreConfig, score_explanations
from saescope.models import load_model

SAE = "saes/topk-w8192-k32"
NEURON_SITE = "layers.6.mlp_act"


def build(args: argparse.Namespace) -> dict[str, Path]:
    out = Path(args.out)
    paths = {"SAE features": out / "sae-index.db", "neurons": out / "neuron-index.db"}
    model = load_model("gemma-3-270m")
    if not paths["SAE features"].exists():
        index_features(paths["SAE features"], sae_dir=Path(args.qs) / SAE, model=model,
                       cache_dir=Path(args.qs) / "activations", tokens=args.tokens, resume=True)  # fmt: skip
    if not paths["neurons"].exists():
        index_features(paths["neurons"], site=NEURON_SITE, model=model, tokens=args.tokens,
                       resume=True)  # fmt: skip
    return paths


def pick(index: FeatureIndex, n: int, seed: int) -> list[int]:
    live = [int(f) for (f,) in index.db.execute("SELECT feature FROM features WHERE fires > 0")]
    return sorted(int(f) for f in np.random.default_rng(seed).permutation(live)[:n])


def summary(index: FeatureIndex, features: list[int], explainer: str) -> list[list[str]]:
    """Per explainer kind: the mean score of each method over features, a 95% bootstrap
    interval over features, and how many features it rests on."""
    kinds = {explainer: "LLM", store.EXPLAINER_PEAKS: "peak tokens",
             f"{store.EXPLAINER_RANDOM}:{explainer}": "random feature"}  # fmt: skip
    rows = []
    for name, label in kinds.items():
        cells = [label]
        for method in METHODS:
            values = [
                s.score
                for f in features
                for e in index.explanations(f) if e.explainer == name
                for s in e.scores if s.method == method and s.score is not None
            ]  # fmt: skip
            if not values:
                cells.append("–")
                continue
            gen = np.random.default_rng(0)
            boot = [np.mean(gen.choice(values, len(values))) for _ in range(1000)]
            lo, hi = np.percentile(boot, [2.5, 97.5])
            cells.append(f"{np.mean(values):.3f} [{lo:.3f}, {hi:.3f}] ({len(values)})")
        rows.append(cells)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qs", default="/work/runs/qs", help="a finished quickstart")
    parser.add_argument("--out", default="/work/runs/explain/study")
    parser.add_argument("--tokens", type=int, default=262_144, help="tokens each index scans")
    parser.add_argument("--features", type=int, default=50, help="features (and neurons) each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--llm", default=None, help="explainer and scorer (default: embedded)")
    parser.add_argument("--api-base", default=None, help="an OpenAI-compatible endpoint")
    parser.add_argument("--doc", default="docs/auto-interp.md")
    parser.add_argument("--methods", default=",".join(METHODS), help="scoring methods")
    parser.add_argument("--activating", type=int, default=ScoreConfig.activating,
                        help="held-out firing contexts scored per feature")  # fmt: skip
    parser.add_argument("--silent", type=int, default=ScoreConfig.silent,
                        help="held-out silent contexts scored per feature")  # fmt: skip
    parser.add_argument("--batch", type=int, default=8, help="conversations per local batch")
    parser.add_argument("--setup-only", action="store_true", help="indexes and picks, no LLM")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    paths = build(args)
    picks = {}
    for label, path in paths.items():
        with FeatureIndex(path) as index:
            picks[label] = pick(index, args.features, args.seed)
            print(f"{label}: {path}, features {picks[label]}")
    if args.setup_only:
        return
    from saescope.interpret.llm import make_backend  # the LLM only past --setup-only

    backend = make_backend(model=args.llm, api_base=args.api_base, concurrency=args.batch)
    methods = tuple(m for m in args.methods.split(",") if m)
    score_cfg = ScoreConfig(methods=methods, activating=args.activating, silent=args.silent)
    lines = ["# Auto-interp: SAE features against raw neurons", "",
             f"Explainer and scorer: `{backend.name}`. Written by `examples/autointerp_study.py` "
             f"(seed {args.seed}, {args.features} features and neurons, {args.tokens:,} tokens "
             f"indexed); scores on each feature's held-out contexts ({args.activating} firing, "
             f"{args.silent} silent), methods {', '.join(methods)}; means over features with 95% "
             "bootstrap intervals over features (and how many features).", ""]  # fmt: skip
    for label, path in paths.items():
        with FeatureIndex(path) as index:
            start = time.perf_counter()
            explained = explain_features(index, picks[label], backend, ExplainConfig())
            mid = time.perf_counter()
            scored = score_explanations(index, backend, score_cfg, picks[label])
            end = time.perf_counter()
            lines += [f"## {label} ({index.meta['site']}, {len(picks[label])} random live)", "",
                      "| explanation | " + " | ".join(METHODS) + " |",
                      "|---|" + "---|" * len(METHODS)]  # fmt: skip
            lines += [
                "| " + " | ".join(row) + " |" for row in summary(index, picks[label], backend.name)
            ]
            lines += ["", f"Explain: {len(explained.explained)} features in {mid - start:.0f} s, "
                      f"{explained.prompt_tokens:,} prompt + {explained.completion_tokens:,} "
                      f"completion tokens, {len(explained.unparsed)} answers unparsed. Score: "
                      f"{scored.calls} calls in {end - mid:.0f} s, {scored.prompt_tokens:,} + "
                      f"{scored.completion_tokens:,} tokens, {scored.n_unparsed} answers "
                      f"unparsed (counted, not scored).", ""]  # fmt: skip
    Path(args.doc).write_text("\n".join(lines))
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
