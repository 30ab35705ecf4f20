"""Shared pieces of the command line: argument groups and the subcommand helper."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], None]


def add_command(
    sub: Any, name: str, handler: Handler, help_: str, description: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help=help_,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.set_defaults(handler=handler)
    return p


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="gemma-3-270m",
        help="alias gemma-3-270m (default, embedded), a local directory, a .gguf file, or a hub id",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        help="model dtype: auto (bf16 where the device runs it fast), fp32, bf16, fp16",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default="default",
        help="'default' (Wikipedia summaries + Gutenberg books), a .txt/.jsonl/"
        ".parquet file, a datasets directory (save_to_disk) or a folder of files",
    )
    p.add_argument("--text-field", default="text", help="field holding the text (.jsonl/.parquet)")
    p.add_argument("--context-size", type=int, default=128, help="tokens per context, BOS included")
    p.add_argument("--seed", type=int, default=0, help="document shuffle seed")
    p.add_argument(
        "--keep-special",
        action="store_true",
        help="keep BOS/EOS/pad positions (excluded by default: their norms are "
        "15-25x a typical token's)",
    )


def context_config(args: argparse.Namespace):  # -> ContextConfig
    from saescope.data import ContextConfig

    return ContextConfig(
        context_size=args.context_size, seed=args.seed, exclude_special=not args.keep_special
    )


def ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err
