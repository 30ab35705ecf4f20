"""Auto-interp throughput: features explained and scored per minute, LLM calls and tokens per
feature, with the embedded default explainer (or ``--llm`` / ``--api-base``).

Explains ``--features`` random live features of a format-3 index (a copy, so the original is
untouched), then scores their explanations and baselines by every method. Appends one JSON
line to benchmarks/results/autointerp_throughput.jsonl.

    python benchmarks/autointerp_throughput.py --index /work/runs/explain/study/sae-index.db
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _record import append, environment

from saescope.interpret.explain import ExplainConfig, explain_features
from saescope.interpret.llm import make_backend
from saescope.interpret.query import FeatureIndex
from saescope.interpret.scoring import ScoreConfig, score_explanations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="a format-3 feature index")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--llm", default=None)
    parser.add_argument("--api-base", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(shutil.copy(args.index, Path(tmp) / "index.db"))
        backend = make_backend(model=args.llm, api_base=args.api_base)
        with FeatureIndex(path) as index:
            live = [
                int(f) for (f,) in index.db.execute("SELECT feature FROM features WHERE fires > 0")
            ]
            picked = sorted(
                int(f) for f in np.random.default_rng(args.seed).permutation(live)[: args.features]
            )
            start = time.perf_counter()
            explained = explain_features(index, picked, backend, ExplainConfig())
            mid = time.perf_counter()
            scored = score_explanations(index, backend, ScoreConfig(), picked)
            end = time.perf_counter()
    n = len(picked)
    result = {
        "explainer": backend.name,
        "features": n,
        "explained_per_minute": n / (mid - start) * 60,
        "scored_per_minute": n / (end - mid) * 60,
        "explain_calls_per_feature": len(explained.explained) / n,
        "explain_tokens_per_feature": (explained.prompt_tokens + explained.completion_tokens) / n,
        "score_calls_per_feature": scored.calls / n,
        "score_tokens_per_feature": (scored.prompt_tokens + scored.completion_tokens) / n,
        "explain_unparsed": len(explained.unparsed),
        "score_unparsed": scored.n_unparsed,
        **environment(),
    }
    print(result)
    append("autointerp_throughput", result)


if __name__ == "__main__":
    main()
