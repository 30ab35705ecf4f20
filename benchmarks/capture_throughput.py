"""Capture throughput on the default model, against the bare forward passes it is built on.

Measured in one run, on the same contexts and batch size:
  - bare truncated forward: the model's own base forward with its layer list cut after the
    hooked layer (no saescope code in the loop);
  - capture: ``saescope.capture`` into an on-disk cache (hooks, masking, copying, shard writes,
    checksums, manifest);
  - full forward: the untruncated model with its 262k-vocabulary unembedding.
Writes a JSON record and appends a markdown row to benchmarks/results/capture.md.

    python benchmarks/capture_throughput.py [--tokens 200000] [--site layers.6.resid_post]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _record import append, environment
from torch import nn

from saescope.activations import capture
from saescope.data import ContextConfig, load_corpus, pack_contexts
from saescope.models import DEFAULT_MODEL, Site, load_model


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn, batches: list[torch.Tensor]) -> float:
    """Tokens per second of ``fn`` over ``batches`` (after one warm-up batch)."""
    fn(batches[0])
    start = time.perf_counter()
    for batch in batches:
        fn(batch)
    return sum(b.numel() for b in batches) / (time.perf_counter() - start)


@torch.inference_mode()
def bare_truncated(model, layer: int, batches: list[torch.Tensor]) -> float:
    base = model.hf.model
    layers = base.layers
    base.layers = nn.ModuleList(layers[: layer + 1])
    try:
        return timed(lambda ids: base(input_ids=ids, use_cache=False), batches)
    finally:
        base.layers = layers


@torch.inference_mode()
def full_forward(model, batches: list[torch.Tensor]) -> float:
    return timed(lambda ids: model.hf(input_ids=ids, use_cache=False), batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--full-tokens", type=int, default=16_384)
    parser.add_argument("--site", default="layers.6.resid_post")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="bf16")
    args = parser.parse_args()

    site = Site.parse(args.site)
    model = load_model(DEFAULT_MODEL, dtype=args.dtype, device="cpu")
    corpus = load_corpus()
    context = ContextConfig(context_size=128)
    n_contexts = args.tokens // (context.context_size - 1) + 1
    contexts = list(itertools.islice(pack_contexts(corpus, model.tokenizer, context), n_contexts))
    batches = [
        torch.stack(contexts[i : i + args.batch_size])
        for i in range(0, len(contexts), args.batch_size)
    ]
    full_batches = batches[: max(2, args.full_tokens // batches[0].numel())]

    bare = bare_truncated(model, site.layer, batches)
    rss_before = peak_rss_gib()
    out = Path(tempfile.mkdtemp(prefix="saescope-bench-"))
    try:
        capture(
            model,
            [site],
            out / "c",
            tokens=args.batch_size * 127,
            corpus=corpus,
            context=context,
            batch_size=args.batch_size,
            progress=False,
        )  # warm-up
        start = time.perf_counter()
        cache = capture(
            model,
            [site],
            out / "cache",
            tokens=args.tokens,
            corpus=corpus,
            context=context,
            batch_size=args.batch_size,
            progress=False,
        )
        seconds = time.perf_counter() - start
        last = cache.manifest.shards[-1].contexts_done
        capture_tok_s = last * context.context_size / seconds  # tokens through the model
        rows_s = len(cache) / seconds  # rows written (BOS excluded)
        disk = sum(s.bytes for s in cache.manifest.shards)
    finally:
        shutil.rmtree(out)
    full = full_forward(model, full_batches)

    record = {
        **environment(),
        "model": DEFAULT_MODEL,
        "dtype": args.dtype,
        "site": site.name,
        "batch": f"{args.batch_size}x128",
        "tokens": args.tokens,
        "bare_truncated_tok_s": round(bare),
        "capture_tok_s": round(capture_tok_s),
        "capture_rows_s": round(rows_s),
        "full_forward_tok_s": round(full),
        "capture_vs_bare": round(capture_tok_s / bare, 3),
        "capture_vs_full": round(capture_tok_s / full, 2),
        "peak_rss_gib": round(peak_rss_gib(), 2),
        "peak_rss_before_capture_gib": round(rss_before, 2),
        "bytes_per_token": round(disk / len(cache), 1),
    }
    append("capture", record, indent=1)


if __name__ == "__main__":
    main()
