"""``saescope train``: SAEs from a cache or a live model, one or a sweep."""

from __future__ import annotations

import argparse
from typing import Any

from saescope.cli.common import add_command, context_config, ints
from saescope.errors import SaescopeError


def _train_config(args: argparse.Namespace, tokens: int):  # -> TrainConfig
    from saescope.models.loading import cpu_has_fast_bf16
    from saescope.train import DeadConfig, OptimConfig, SparsityConfig, TrainConfig

    encoder = args.encoder_dtype
    if encoder == "auto":
        fast = args.device.startswith("cuda") or (args.device == "cpu" and cpu_has_fast_bf16())
        encoder = "bfloat16" if fast else "float32"
    return TrainConfig(
        tokens=tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        encoder_dtype=encoder,
        normalize=not args.no_normalize,
        decoder_norm=args.decoder_norm,
        checkpoint_every=args.checkpoint_every,
        optim=OptimConfig(lr=args.lr, betas=(args.beta1, 0.999)),
        sparsity=SparsityConfig(l1_coef=args.l1, l0_coef=args.l0_coef),
        dead=DeadConfig(method=args.dead, window_tokens=args.dead_window),
    )


def cmd_train(args: argparse.Namespace) -> None:
    from saescope import pipeline
    from saescope.models.loading import resolve_device

    args.device = str(resolve_device(args.device))  # auto: cuda:<local rank> or cpu
    if args.acts is None and args.model is None:
        raise SaescopeError("give --acts CACHE (train from a cache) or --model and --site (live)")
    from saescope._dist import init_distributed

    rank = init_distributed()  # under torchrun: data-parallel, --batch-size per rank
    if args.acts is not None:
        from saescope.activations import open_activations

        cache = open_activations(args.acts)
        site = cache.site(args.site[0] if args.site else None)
        d_in = cache.d(site)
        train, _ = cache.split(args.holdout)
        tokens = args.tokens or args.epochs * cache.rows_in(train)
    else:
        if not args.site or not args.tokens:
            raise SaescopeError("live training (--model) needs --site and --tokens")
        from saescope.data import load_corpus
        from saescope.models import load_model

        model = load_model(args.model, dtype=args.dtype, device=args.device)
        d_in, tokens = model.site_dim(args.site[0]), args.tokens
    widths = args.width or [e * d_in for e in args.expansion]
    specs = pipeline.sweep(args.arch, widths, args.k, b_dec_input=not args.no_b_dec_input)
    cfg = _train_config(args, tokens // rank.world_size)
    if args.acts is not None:
        results = pipeline.train_from_cache(
            args.acts,
            args.out,
            specs,
            cfg,
            site=site,
            holdout_rows=args.holdout,
            device=args.device,
            resume=args.resume,
            log_to=args.log_to,
        )
    else:
        corpus = load_corpus(args.dataset, text_field=args.text_field)
        results = pipeline.train_live(
            model,
            args.site[0],
            corpus,
            context_config(args),
            args.out,
            specs,
            cfg,
            device=args.device,
            resume=args.resume,
            log_to=args.log_to,
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


def _architectures() -> list[str]:
    from saescope.sae import ARCHITECTURES

    return list(ARCHITECTURES)


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
        type=lambda s: s.split(","),
        default=["topk"],
        help="architecture(s): " + ", ".join(sorted(_architectures())),
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
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--lr", type=float, default=None, help="default 8e-4/sqrt(width/2^14)")
    p.add_argument("--beta1", type=float, default=0.9, help="Adam beta1 (0 also works well)")
    p.add_argument("--l1", type=float, default=5.0, help="relu/gated: L1 coefficient")
    p.add_argument("--l0-coef", type=float, default=1.0, help="jumprelu: L0 coefficient")
    p.add_argument(
        "--dead",
        choices=["auxk", "resample", "ghost", "none"],
        default=None,
        help="dead-latent method (default: auxk for topk/batchtopk, ghost otherwise)",
    )
    p.add_argument(
        "--dead-window",
        type=int,
        default=None,
        help="tokens without firing after which a latent counts as dead (default: a quarter "
        "of the training tokens, at most 1M)",
    )
    p.add_argument(
        "--encoder-dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="dtype of the encoder matmul that selects latents (auto: bf16 where fast)",
    )
    p.add_argument(
        "--no-normalize",
        action="store_true",
        help="do not scale inputs to E||x|| = sqrt(d) (the scale is folded on save)",
    )
    p.add_argument(
        "--decoder-norm",
        choices=["unit", "at_most_one"],
        default="unit",
        help="keep decoder rows at norm 1, or only at most 1",
    )
    p.add_argument(
        "--no-b-dec-input",
        action="store_true",
        help="do not subtract b_dec from the input before encoding",
    )
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--log-to",
        action="append",
        default=[],
        choices=["wandb", "tensorboard"],
        help="also send metrics to wandb or tensorboard (installed separately)",
    )
    p.add_argument("--dataset", default="default", help="live mode: corpus (as for capture)")
    p.add_argument("--text-field", default="text", help=argparse.SUPPRESS)
    p.add_argument("--context-size", type=int, default=128, help=argparse.SUPPRESS)
    p.add_argument("--keep-special", action="store_true", help=argparse.SUPPRESS)
