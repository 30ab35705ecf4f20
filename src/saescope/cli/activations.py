"""``saescope capture`` and ``saescope inspect``: activation caches."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from saescope.cli.common import add_command, add_data_args, add_model_args, context_config

log = logging.getLogger("saescope")


def cmd_capture(args: argparse.Namespace) -> None:
    from saescope._dist import init_distributed
    from saescope.activations import capture
    from saescope.data import load_corpus
    from saescope.models import load_model
    from saescope.models.loading import resolve_device

    resolve_device(args.device)  # before init and loading: fail in a second, not after minutes
    rank = init_distributed()  # under torchrun: join the group, capture this rank's share
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    corpus = load_corpus(args.dataset, text_field=args.text_field)
    cache = capture(
        model,
        args.site,
        args.out,
        tokens=args.tokens,
        corpus=corpus,
        context=context_config(args),
        dtype=args.store_dtype,
        batch_size=args.batch_size,
        shard_rows=args.shard_rows,
        resume=args.resume,
    )
    if rank.rank == 0:
        _print_cache(cache)


def cmd_inspect(args: argparse.Namespace) -> None:
    from saescope.activations import open_activations

    cache = open_activations(args.cache, allow_incomplete=True)
    if args.verify:
        cache.verify()
        log.info("all %d shards match their checksums", len(cache.manifest.shards))
    _print_cache(cache)


def _print_cache(cache: Any) -> None:
    m = cache.manifest
    state = "complete" if m.complete else "UNFINISHED (resume with --resume)"
    size = sum(s.bytes for s in m.shards)
    print(f"cache {cache.root}: {state}")
    print(
        f"  model {m.model} ({m.model_type}), dataset {m.dataset}, "
        f"context {m.context['context_size']}"
    )
    print(f"  sites {', '.join(f'{k} (d={v})' for k, v in m.sites.items())}, dtype {m.dtype}")
    print(
        f"  {m.rows:,} rows of {m.tokens:,} asked, {len(m.shards)} shards, "
        f"{size / 2**20:,.1f} MiB ({size / max(m.rows, 1):,.0f} bytes/token)"
    )
    for note in m.notes:
        print(f"  note: {note}")


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "capture",
        cmd_capture,
        "capture activations at hook sites into a cache",
        "Run the model over a corpus and write the activations at one or more sites into "
        "sharded safetensors files with a manifest. The forward pass stops after the "
        "deepest site. Killed? Run the same command with --resume. Under torchrun each "
        "rank captures its share into the same directory.",
    )
    add_model_args(p)
    p.add_argument(
        "--site",
        action="append",
        required=True,
        help="hook site, e.g. layers.6.resid_post; repeat for several in one pass",
    )
    p.add_argument(
        "--tokens",
        type=int,
        required=True,
        help="activation rows to capture (special tokens excluded)",
    )
    p.add_argument("--out", required=True, help="cache directory")
    add_data_args(p)
    p.add_argument(
        "--store-dtype", default=None, help="dtype on disk: fp32, bf16, fp16 (default: the model's)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="contexts per forward pass")
    p.add_argument("--shard-rows", type=int, default=65_536, help="rows per shard file")
    p.add_argument("--resume", action="store_true", help="continue an interrupted capture")

    p = add_command(
        sub,
        "inspect",
        cmd_inspect,
        "describe an activation cache",
        "Print what a cache holds (model, sites, rows, size); --verify checks every "
        "shard's checksum.",
    )
    p.add_argument("cache", help="cache directory")
    p.add_argument("--verify", action="store_true", help="read every shard and check its sha256")
