"""Feature-index speed: is the pass dominated by the SAE encode (cache) or the model (live)?

Over the same cached rows, times (1) the SAE encode and (2) the statistics the index keeps,
batch by batch in one loop (the index pass is exactly the two), then the writing of the SQLite file and its size; then, live, the model's
forward up to the site alone against the live index pass. Appends one JSON line per run to
benchmarks/results/index_throughput.jsonl.

    python benchmarks/index_throughput.py --sae saescope-out/saes/topk-w8192-k32 \
        --acts saescope-out/activations --tokens 1000000 --live-tokens 32768
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _record import append, environment

from saescope.activations import open_activations
from saescope.data import ContextConfig, load_corpus
from saescope.interpret.batches import cache_batches, live_batches
from saescope.interpret.collect import FeatureCollector
from saescope.interpret.index import build_index
from saescope.interpret.sources import sae_source
from saescope.models import load_model


def cached_pass(source, cache, tokens: int) -> dict[str, float]:
    size = int(cache.manifest.context["context_size"])
    batches = []
    rows = 0
    for batch, _ in cache_batches(cache, source.site, size):
        batches.append(batch)
        rows += len(batch.acts)
        if rows >= tokens:
            break
    # Encode and statistics are timed batch by batch in one loop, so that both see the same
    # machine load: the index pass is exactly encode + update.
    collector = FeatureCollector(source.n_features)
    encode = update = 0.0
    for batch in batches:
        start = time.perf_counter()
        latents = source.encode(batch.acts)
        middle = time.perf_counter()
        collector.update(batch, latents)
        encode += middle - start
        update += time.perf_counter() - middle
    return {"rows": rows, "encode_tok_s": rows / encode, "index_tok_s": rows / (encode + update)}


def live_pass(source, model, tokens: int) -> dict[str, float]:
    """The same split live: the model's forward (and packing) per batch, then encode + update."""
    corpus, context = load_corpus(), ContextConfig()
    stream = live_batches(model, source.site, corpus, context)
    collector = FeatureCollector(source.n_features)
    forward = rest = 0.0
    rows = 0
    while rows < tokens:
        start = time.perf_counter()
        batch, _ = next(stream)
        middle = time.perf_counter()
        collector.update(batch, source.encode(batch.acts))
        forward += middle - start
        rest += time.perf_counter() - middle
        rows += len(batch.acts)
    return {"live_rows": rows, "forward_tok_s": rows / forward,
            "live_index_tok_s": rows / (forward + rest)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sae", required=True)
    parser.add_argument("--acts", required=True)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--live-tokens", type=int, default=32_768)
    args = parser.parse_args()
    source = sae_source(args.sae)
    cache = open_activations(args.acts)
    model = load_model(cache.manifest.model)
    result: dict[str, object] = {
        **environment(),
        "sae": f"{source.n_features} features at {source.site}",
    }
    result |= cached_pass(source, cache, args.tokens)
    result["index_over_encode"] = result["index_tok_s"] / result["encode_tok_s"]  # type: ignore[operator]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "index.db"
        size = int(cache.manifest.context["context_size"])
        start = time.perf_counter()
        build_index(
            source, model, lambda s: cache_batches(cache, source.site, size, start=s), out,
            args.tokens, {"model": model.name}, progress=False,
        )  # fmt: skip
        result["build_seconds"] = time.perf_counter() - start
        result["db_mib"] = out.stat().st_size / 2**20
    if args.live_tokens:
        result |= live_pass(source, model, args.live_tokens)
        result["live_index_over_forward"] = result["live_index_tok_s"] / result["forward_tok_s"]  # type: ignore[operator]
    append("index_throughput", result, indent=1)


if __name__ == "__main__":
    main()
