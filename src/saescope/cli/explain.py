"""Auto-interp commands: ``explain`` (an LLM writes each feature's explanation) and ``score``
(a scorer LLM predicts, from the explanation alone, where the feature fires on held-out text)."""

from __future__ import annotations

import argparse
from typing import Any

from saescope.cli.common import add_command, ints


def _features(args: argparse.Namespace, index: Any) -> list[int]:
    """The features of ``--features``, ``--sample N`` (random live ones) or ``--all``."""
    import numpy as np

    if args.features:
        return [index.check(f) for f in args.features]
    live = [int(f) for (f,) in index.db.execute("SELECT feature FROM features WHERE fires > 0")]
    if args.all:
        return live
    from saescope.errors import SaescopeError

    if args.sample < 1:
        raise SaescopeError(f"--sample must be >= 1, got {args.sample}")
    picked = np.random.default_rng(args.seed).permutation(live)[: args.sample]
    return sorted(int(f) for f in picked)


def cmd_explain(args: argparse.Namespace) -> None:
    from saescope.cli.llm import backend_from_args
    from saescope.interpret.explain import ExplainConfig, explain_features
    from saescope.interpret.query import FeatureIndex

    cfg = ExplainConfig(
        top=args.top, samples=args.samples, hint=args.hint, batch=args.batch, seed=args.seed
    )
    with FeatureIndex(args.index) as index:
        features = _features(args, index)
        backend = backend_from_args(args)
        run = explain_features(index, features, backend, cfg)
    print(
        f"explainer {run.explainer}: {len(run.explained)} explained "
        f"({len(run.unparsed)} answers unparsed), {len(run.already)} already done, "
        f"{len(run.dead)} never fire; {run.prompt_tokens:,} prompt + "
        f"{run.completion_tokens:,} completion tokens\n"
        f"next:  saescope score --index {args.index}"
    )


def cmd_score(args: argparse.Namespace) -> None:
    from saescope.cli.llm import backend_from_args
    from saescope.cli.render import console, explanations_table
    from saescope.interpret.query import FeatureIndex
    from saescope.interpret.scoring import ScoreConfig, score_explanations

    cfg = ScoreConfig(
        methods=tuple(m.strip() for m in args.method.split(",") if m.strip()),
        activating=args.activating,
        silent=args.silent,
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    with FeatureIndex(args.index) as index:
        backend = backend_from_args(args, prefix="scorer-")
        run = score_explanations(index, backend, cfg, args.features)
        features = sorted({f for (f,) in index.db.execute(
            "SELECT DISTINCT feature FROM explanations")})  # fmt: skip
        if args.features:
            features = [f for f in features if f in set(args.features)]
        out = console()
        out.print(explanations_table(index, features[: args.show]))
    print(
        f"scorer {run.scorer}: {len(run.scored)} scores ({run.already} already done), "
        f"{run.calls} calls, {run.n_unparsed} answers unparsed (counted, not scored), "
        f"{len(run.unscorable)} features without held-out firing contexts; "
        f"{run.prompt_tokens:,} prompt + {run.completion_tokens:,} completion tokens"
    )


def register(sub: Any) -> None:
    from saescope.cli.llm import add_backend_arguments

    p = add_command(
        sub,
        "explain",
        cmd_explain,
        "an LLM explains features from their examples in the index",
        "Show an explainer LLM each feature's top and sampled contexts (tokens with "
        "activations 0-10, tab-separated) and store its explanation in the index with the "
        "model's name, the prompt version and the tokens used; beside it two baselines, the "
        "feature's commonest peak tokens and a random other feature's explanation. A killed "
        "run continues where it stopped when started again: features already explained by "
        "the same model and prompt are skipped. The embedded default explainer is tiny; for "
        "a real study point --api-base at a strong model.",
    )
    p.add_argument("--index", required=True, help="feature index (saescope index)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--features", type=ints, help="comma-separated feature ids")
    which.add_argument("--sample", type=int, help="this many random features that fire")
    which.add_argument("--all", action="store_true", help="every feature that fires")
    p.add_argument("--top", type=int, default=10, help="top contexts shown")
    p.add_argument("--samples", type=int, default=6, help="sampled contexts shown")
    p.add_argument("--hint", action="store_true", help="list the tokens each feature promotes")
    p.add_argument("--batch", type=int, default=8, help="features per batch (and commit)")
    p.add_argument("--seed", type=int, default=0, help="for --sample and the random baseline")
    add_backend_arguments(p)

    p = add_command(
        sub,
        "score",
        cmd_score,
        "score explanations by predicting where features fire on held-out text",
        "For every explanation in the index (baselines included), a scorer LLM sees only the "
        "explanation and the index's held-out contexts (never shown to the explainer: firing "
        "ones across quantiles, silent ones with near misses first): detection (does it fire "
        "in this context? balanced accuracy), fuzzing (are the marked tokens where it fires? "
        "balanced accuracy), simulation (each token's activation 0-10, all at once; "
        "correlation). Each score is stored with a 95% bootstrap interval, the items scored "
        "and the answers that did not parse (counted, never scored). Resumable like explain.",
    )
    p.add_argument("--index", required=True, help="feature index (saescope index)")
    p.add_argument(
        "--method", default="detection,fuzzing,simulation", help="comma-separated methods"
    )
    p.add_argument("--features", type=ints, help="only these features' explanations")
    p.add_argument("--activating", type=int, default=10, help="held-out firing contexts")
    p.add_argument("--silent", type=int, default=10, help="held-out silent contexts")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", type=int, default=20, help="features to list afterwards")
    add_backend_arguments(p, prefix="scorer-")
