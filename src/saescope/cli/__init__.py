"""The ``saescope`` command line: parse arguments, call one library function, render the result.

One module per group of commands; each has a ``register(sub)`` that adds its subparsers.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from saescope import __version__
from saescope.cli import (
    activations,
    attribute,
    coding,
    evaluate,
    explain,
    export,
    interpret,
    model,
    pretrained,
    serve,
    steer,
    toy,
    train,
    vector,
)
from saescope.cli.common import add_command, add_format_options, apply_sae_format
from saescope.errors import SaescopeError

log = logging.getLogger("saescope")


def cmd_quickstart(args: argparse.Namespace) -> None:
    from saescope.quickstart import run_quickstart

    run_quickstart(Path(args.out), tokens=args.tokens, site=args.site, epochs=args.epochs)


def cmd_walkthrough(args: argparse.Namespace) -> None:
    from saescope.walkthrough import run_walkthrough

    run_walkthrough(Path(args.out), prompt=args.prompt)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saescope",
        description="Sparse autoencoders on any Hugging Face causal LM: capture activations at "
        "a hook site, train SAEs, evaluate, interpret, steer.",
        epilog="Start with `saescope quickstart`. Sites are spelled layers.<i>.<kind> with kind "
        "in resid_pre, attn_out, mlp_act, mlp_out, resid_post (TransformerLens "
        "blocks.<i>.hook_resid_post is accepted).",
    )
    parser.add_argument("--version", action="version", version=f"saescope {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_command(
        sub,
        "quickstart",
        cmd_quickstart,
        "run every stage on the embedded default model",
        "Run the whole pipeline on Gemma 3 270M and the offline corpus (no network): "
        "capture activations at one site into a cache, train a TopK SAE (width 8192, k=32) "
        "on them, and evaluate it (held-out reconstruction, next-token loss with it spliced "
        "in, OUT/report/report.html), index its features (OUT/index.db, with dashboards "
        "of a few in OUT/dashboards), and steer with the feature the index finds for 'ocean'. "
        "The first run converts the model from GGUF once (about a minute). Reruns reuse what "
        "is done. Prints where every output is.",
    )
    p.add_argument("--out", default="saescope-out", help="directory for every output")
    p.add_argument(
        "--tokens",
        type=int,
        default=524_288,
        help="training tokens to capture (one more shard, ~65k tokens, is held out)",
    )
    p.add_argument("--site", default="layers.6.resid_post", help="hook site")
    p.add_argument("--epochs", type=int, default=2, help="passes over the training tokens")
    p = add_command(
        sub,
        "walkthrough",
        cmd_walkthrough,
        "the seed walkthrough at the late layer where the model decides",
        "On Gemma 3 270M and the offline corpus: capture layers.13.resid_post (where the logit "
        "lens shows the model deciding, benchmarks/late_layer.md), train TopK SAEs of width "
        "2048 and 8192 (k=32) in one sweep, evaluate and index both, then show the next "
        "token, the logit lens and both SAEs' features on the prompt. Reruns reuse what is done.",
    )
    p.add_argument("--out", default="saescope-walkthrough", help="directory for every output")
    p.add_argument("--prompt", default="The reliability of Wikipedia is very")
    for group in (activations, train, evaluate, coding, interpret, explain, export, model,
                  steer, attribute, vector, serve, toy):  # fmt: skip
        group.register(sub)
    pretrained.register(sub)
    add_format_options(parser)  # after every command that takes --sae is registered
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_sae_format(args)
    from rich.logging import RichHandler

    quiet_rank = int(os.environ.get("RANK", "0")) > 0  # under torchrun, rank 0 speaks for all
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet_rank else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, show_time=False)],
    )
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if not args.verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        args.handler(args)
    except SaescopeError as err:
        log.error("%s", err)
        return 2
    except OSError as err:
        if err.filename is None and err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise  # not about a path or the disk: a bug or the system, keep the traceback
        # A full disk, an --out under a file, a read-only folder: atomic writes have already
        # removed their temporary files, so one line naming the path is all that is left to say.
        log.error(
            "%s: %s; check the path, its permissions and the free disk space, then run the "
            "same command again",
            err.filename or "writing the output",
            err.strerror or err,
        )
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; capture, train and index continue with --resume")
        return 130
    return 0


def run() -> NoReturn:
    """The ``saescope`` program (console script and ``python -m saescope``)."""
    from saescope._dist import end_worker, launched_by_torchrun

    code = main()
    if launched_by_torchrun():
        end_worker(code)  # skips interpreter teardown, where gloo workers sometimes abort
    sys.exit(code)


if __name__ == "__main__":
    run()
