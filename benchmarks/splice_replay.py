"""Spliced-loss evaluation with and without the suffix replay, on the default model.

``spliced_stats`` with ablations (clean, spliced, zero- and mean-ablation) over the same token
batches, two ways, interleaved and repeated, the median kept:
  - full: every edited run is a full forward (the path taken before the replay, and still the
    fallback: the recording's prefix is forced to None, its read-only hooks still run);
  - replay: the edited runs re-run only the layers from the site onward, then the head.
Both must give the same numbers; the script checks it. Appends a JSON record to
benchmarks/results/splice_replay.jsonl.

    python benchmarks/splice_replay.py [--sae saescope-out/saes/topk-w8192-k32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch
from _record import append, environment

from saescope.data import ContextConfig, keep_positions, load_corpus, pack_contexts
from saescope.evaluate import spliced_stats
from saescope.models import DEFAULT_MODEL, load_model
from saescope.models.replay import Recording
from saescope.sae import load_sae, sae_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sae", default="saescope-out/saes/topk-w8192-k32")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    model = load_model(DEFAULT_MODEL, dtype=args.dtype, device="cpu")
    sae = load_sae(args.sae)
    site = sae_site(sae)
    contexts = pack_contexts(load_corpus(), model.tokenizer, ContextConfig(args.context))
    ids = torch.stack([next(contexts) for _ in range(args.batches * args.batch_size)])
    batches = list(ids.split(args.batch_size))

    def run(data: list[torch.Tensor] = batches) -> tuple[float, object]:
        start = time.perf_counter()
        stats = spliced_stats(model, sae, site, data, lambda x: keep_positions(x, model.tokenizer))
        return time.perf_counter() - start, stats

    run(batches[:1])  # warm-up
    seconds: dict[str, list[float]] = {"full": [], "replay": []}
    results = {}
    for _ in range(args.repeats):  # interleaved: load from other processes hits both alike
        with mock.patch.object(Recording, "prefix", lambda self: None):
            t, results["full"] = run()
        seconds["full"].append(t)
        t, results["replay"] = run()
        seconds["replay"].append(t)
    if results["full"] != results["replay"]:
        raise AssertionError(f"replay changed the numbers: {results}")
    median = {name: statistics.median(v) for name, v in seconds.items()}
    record = {
        **environment(),
        "model": DEFAULT_MODEL,
        "dtype": str(model.dtype),
        "site": site,
        "sae": f"{sae.cfg.architecture} d_sae={sae.cfg.d_sae} k={sae.cfg.k}",
        "batches": f"{args.batches} x {args.batch_size} x {args.context}",
        "repeats": args.repeats,
        **{f"{name}_s": round(v, 2) for name, v in median.items()},
        "speedup": round(median["full"] / median["replay"], 3),
        "all_runs": {name: [round(x, 2) for x in v] for name, v in seconds.items()},
        "stats": results["replay"].to_dict(),  # type: ignore[attr-defined]
    }
    append("splice_replay", record)


if __name__ == "__main__":
    main()
