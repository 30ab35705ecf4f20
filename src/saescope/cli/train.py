"""``saescope train``: SAEs from a cache or a live model, one or a sweep.

Defaults, choices and most help come from ``TrainConfig`` and its nested configs, the
architectures from the registry, the trackers from ``train.loggers``: one source each.
"""

from __future__ import annotations

import argparse
from typing import Any

from saescope.cli.common import (
    add_command,
    add_data_args,
    add_field,
    add_outlier_args,
    context_config,
    field_choices,
    field_default,
    field_docs,
    ints,
    outlier_policy,
)
from saescope.errors import SaescopeError
from saescope.sae import ARCHITECTURES
from saescope.train import DeadConfig, OptimConfig, SparsityConfig, TrainConfig, recipe_for
from saescope.train.loggers import TRACKERS


def cmd_train(args: argparse.Namespace) -> None:
    from saescope.jobs import train_saes

    if args.site and len(args.site) > 1:
        raise SaescopeError(f"train takes one --site, got {len(args.site)}: {args.site}")
    corpus = None
    if args.acts is None and args.model is not None:
        from saescope.data import load_corpus

        corpus = load_corpus(args.dataset, text_field=args.text_field)
    results = train_saes(
        args.out,
        cache_dir=args.acts,
        model=args.model,
        site=args.site[0] if args.site else None,
        corpus=corpus,
        context=context_config(args),
        architectures=args.arch,
        widths=args.width or (),
        expansion=args.expansion,
        ks=args.k,
        b_dec_input=not args.no_b_dec_input,
        tokens=args.tokens,
        epochs=args.epochs,
        holdout_rows=args.holdout,
        encoder_dtype=args.encoder_dtype,
        model_dtype=args.dtype,
        device=args.device,
        resume=args.resume,
        log_to=args.log_to,
        outliers=outlier_policy(args),
        batch_size=args.batch_size,
        seed=args.seed,
        normalize=args.normalize,
        decoder_norm=args.decoder_norm,
        checkpoint_every=args.checkpoint_every,
        optim=OptimConfig(lr=args.lr, betas=(args.beta1, field_default(OptimConfig, "betas")[1])),
        sparsity=SparsityConfig(l1_coef=args.l1, l0_coef=args.l0_coef),
        dead=DeadConfig(method=args.dead, window_tokens=args.dead_window),
    )
    _print_trained(results)


def _print_trained(results: Any) -> None:  # list[TrainedSAE]
    for r in results:
        line = f"{r.name}: saved to {r.path}"
        if r.heldout is not None:
            h = r.heldout
            line += (
                f"  held-out FVU {h.fvu:.4f}  L0 {h.l0:.1f}  dead {h.dead_fraction:.1%}"
                f"  ({h.tokens:,} tokens)"
            )
        print(line)


def _architectures(text: str) -> list[str]:
    names = [a for a in text.split(",") if a]
    unknown = [a for a in names if a not in ARCHITECTURES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown architecture(s) {', '.join(unknown) or repr(text)}; "
            f"expected a comma list of {', '.join(ARCHITECTURES)}"
        )
    return names


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "train",
        cmd_train,
        "train SAEs (one, or a sweep from one pass over the data)",
        "Train sparse autoencoders on activations from a cache (--acts) or streamed live "
        "from a model (--model/--site/--tokens). Comma lists in --arch, --width/--expansion "
        "and --k train every combination from the same batches. Each SAE is saved as "
        "OUT/<arch>-w<width>[-k<k>]/ in the SAELens v6 layout (cfg.json, "
        "sae_weights.safetensors, sparsity.safetensors) with metrics.jsonl and "
        "checkpoints; killed? rerun with --resume. Defaults train a good TopK SAE.",
    )
    p.add_argument("--acts", help="activation cache directory (from `saescope capture`)")
    p.add_argument("--model", default=None, help="live mode: model to stream activations from")
    p.add_argument("--dtype", default="auto", help="live mode: model dtype")
    p.add_argument(
        "--site", action="append", help="hook site (needed live, or for a multi-site cache)"
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--arch",
        type=_architectures,
        default=["topk"],
        help="architecture(s), comma-separated: "
        + "; ".join(f"{name}: {cls.description}" for name, cls in sorted(ARCHITECTURES.items())),
    )
    p.add_argument("--width", type=ints, default=None, help="latents, e.g. 8192 or 4096,16384")
    p.add_argument(
        "--expansion",
        type=ints,
        default=[16],
        help="width = expansion x d_in (ignored when --width is given)",
    )
    p.add_argument("--k", type=ints, default=[32], help="active latents (topk, batchtopk)")
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="training tokens (default: --epochs passes over the cache's training rows)",
    )
    p.add_argument("--epochs", type=int, default=1, help="passes over the cache")
    p.add_argument(
        "--holdout",
        type=int,
        default=65_536,
        help="cache rows held out (whole "
        "final shards) to report FVU/L0 on after training; 0 for none",
    )
    add_field(p, "--batch-size", TrainConfig, "batch_size")
    add_field(p, "--lr", OptimConfig, "lr")
    p.add_argument(
        "--beta1",
        type=float,
        default=field_default(OptimConfig, "betas")[0],
        help="Adam beta1 (0 also works well)",
    )
    add_field(p, "--l1", SparsityConfig, "l1_coef")
    add_field(p, "--l0-coef", SparsityConfig, "l0_coef")
    add_field(
        p,
        "--dead",
        DeadConfig,
        "method",
        help="dead-latent method (default per architecture: "
        + ", ".join(f"{a} {recipe_for(a).default_dead_method}" for a in sorted(ARCHITECTURES))
        + ")",
    )
    add_field(p, "--dead-window", DeadConfig, "window_tokens")
    add_field(
        p,
        "--encoder-dtype",
        TrainConfig,
        "encoder_dtype",
        choices=["auto", *field_choices(TrainConfig, "encoder_dtype")],
        default="auto",
        help="auto: bfloat16 where the CPU or GPU runs it natively. "
        + field_docs(TrainConfig)["encoder_dtype"],
    )
    add_field(p, "--normalize", TrainConfig, "normalize")
    add_field(p, "--decoder-norm", TrainConfig, "decoder_norm")
    p.add_argument(
        "--no-b-dec-input",
        action="store_true",
        help="do not subtract b_dec from the input before encoding",
    )
    add_field(p, "--checkpoint-every", TrainConfig, "checkpoint_every")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    add_field(p, "--seed", TrainConfig, "seed")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    add_outlier_args(p)
    p.add_argument(
        "--log-to",
        action="append",
        default=[],
        choices=list(TRACKERS),
        help="also send metrics to " + " or ".join(TRACKERS) + " (installed separately)",
    )
    add_data_args(p, shown=False)
