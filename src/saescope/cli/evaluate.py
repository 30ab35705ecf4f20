"""``saescope eval``: metrics and the HTML report for one or more SAEs."""

from __future__ import annotations

import argparse
from typing import Any

from saescope.cli.common import (
    add_command,
    add_data_args,
    add_encoder_arg,
    add_outlier_args,
    outlier_policy,
)
from saescope.models.loading import DEFAULT_MODEL


def cmd_eval(args: argparse.Namespace) -> None:
    from saescope.data import ContextConfig
    from saescope.evaluate.run import evaluate_saes

    model = None
    if args.model:
        from saescope.models import load_model

        model = load_model(args.model, dtype=args.dtype, device=args.device)
    corpus = None
    if model is not None:
        from saescope.data import load_corpus

        corpus = load_corpus(args.dataset, text_field=args.text_field)
    report = evaluate_saes(
        args.sae,
        args.out,
        cache_dir=args.acts,
        model=model,
        corpus=corpus,
        context=ContextConfig(context_size=args.context_size, seed=args.seed),
        tokens=args.tokens,
        loss_tokens=args.loss_tokens,
        ablations=not args.no_ablations,
        # without the flag each SAE's metadata decides, as it was trained
        exclude_special=False if args.keep_special else None,
        outliers=outlier_policy(args),
        encoder=args.encoder,
        absorption=args.absorption,
        probing=args.probing,
    )
    print(f"metrics: {report.parent / 'metrics.json'}\nreport:  {report}")


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "eval",
        cmd_eval,
        "evaluate SAEs: reconstruction, spliced loss, latent statistics, HTML report",
        "Score one or more SAEs: FVU, explained variance, cosine, L2 ratio, relative "
        "reconstruction bias, L0 and its distribution, dead and dense latents, firing "
        "densities (on --tokens rows of a cache: its last shards, which `train --holdout` "
        "keeps out), and with --model the next-token loss with each SAE spliced in, against "
        "the clean model and zero and mean ablation (loss recovered, delta loss, KL). "
        "Writes OUT/metrics.json and OUT/report.html.",
    )
    p.add_argument("--sae", nargs="+", required=True, help="SAE directories")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--acts", help="activation cache to measure reconstruction on")
    p.add_argument("--model", help=f"model to splice the SAEs into (e.g. {DEFAULT_MODEL})")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--tokens", type=int, default=65_536, help="reconstruction rows")
    p.add_argument("--loss-tokens", type=int, default=8_192, help="tokens for the spliced loss")
    p.add_argument("--no-ablations", action="store_true", help="skip zero/mean ablation runs")
    add_encoder_arg(p)
    p.add_argument(
        "--absorption",
        action="store_true",
        help="with --model: first-letter feature absorption (Chanin et al. 2024) on the "
        "tokenizer's own single-token words",
    )
    p.add_argument(
        "--probing",
        action="store_true",
        help="with --model: k-sparse probing (k = 1, 2, 5, 20) against raw-activation probes "
        "on labels of the default corpus (Wikipedia vs Gutenberg, inside a quotation)",
    )
    add_outlier_args(p)  # sets the threshold of "w/o outliers"; all rows are scored too
    add_data_args(
        p,
        keep_special="keep BOS/EOS/pad positions in the live reconstruction rows and the "
        "spliced loss for every SAE (default: as each SAE's metadata says it was trained; "
        "a cache's rows are as captured, and a cache that excludes them is refused)",
    )
