"""The ``saescope`` command line: parse arguments, call one library function, render the result."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from saescope import __version__
from saescope.errors import SaescopeError

log = logging.getLogger("saescope")

Handler = Callable[[argparse.Namespace], None]


def _add_model_args(p: argparse.ArgumentParser) -> None:
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


def _add_data_args(p: argparse.ArgumentParser) -> None:
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


def _context(args: argparse.Namespace):  # -> ContextConfig
    from saescope.data import ContextConfig

    return ContextConfig(
        context_size=args.context_size, seed=args.seed, exclude_special=not args.keep_special
    )


def cmd_capture(args: argparse.Namespace) -> None:
    from saescope._dist import init_distributed
    from saescope.activations import capture
    from saescope.data import load_corpus
    from saescope.models import load_model

    rank = init_distributed()  # under torchrun: join the group, capture this rank's share
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    corpus = load_corpus(args.dataset, text_field=args.text_field)
    cache = capture(
        model,
        args.site,
        args.out,
        tokens=args.tokens,
        corpus=corpus,
        context=_context(args),
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


def cmd_sites(args: argparse.Namespace) -> None:
    from saescope.models import SITE_KINDS, load_model

    model = load_model(args.model, dtype=args.dtype, device=args.device)
    print(
        f"{model.name}: {model.hf.config.model_type} (family {model.family.name}), "
        f"{model.n_layers} layers"
    )
    for kind in SITE_KINDS:
        site = model.site(f"layers.0.{kind}")
        print(
            f"  layers.{{0..{model.n_layers - 1}}}.{kind:<11} d={model.site_dim(site):<6} "
            f"(TransformerLens: {site.tl_name.replace('blocks.0', 'blocks.<i>')})"
        )


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err


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
    from saescope.errors import SaescopeError
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
            _context(args),
            args.out,
            specs,
            cfg,
            device=args.device,
            resume=args.resume,
            log_to=args.log_to,
        )
    _print_trained(results)


def _print_trained(results) -> None:  # list[TrainedSAE], imported lazily
    for r in results:
        line = f"{r.name}: saved to {r.path}"
        if r.heldout is not None:
            h = r.heldout
            line += (
                f"  held-out FVU {h.fvu:.4f}  L0 {h.l0:.1f}  dead {h.dead_fraction:.1%}"
                f"  ({h.tokens:,} tokens)"
            )
        print(line)


def cmd_predict(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saescope.interpret.lens import continue_text, predict
    from saescope.models import load_model

    model = load_model(args.model, dtype=args.dtype, device=args.device)
    prediction = predict(model, args.prompt)
    table = Table(title=f"next token after {args.prompt!r}")
    table.add_column("#", justify="right")
    table.add_column("token")
    table.add_column("probability", justify="right")
    for i, (token, p) in enumerate(prediction.top(args.top), 1):
        table.add_row(str(i), repr(token), f"{p:.4f}")
    console = Console()
    console.print(table)
    for i in range(args.samples if args.sample else 1):
        if args.continue_tokens:
            text = continue_text(
                model,
                args.prompt,
                args.continue_tokens,
                sample=args.sample,
                seed=args.seed + i,
                temperature=args.temperature,
            )
            console.print(f"[bold]{args.prompt}[/bold]{text}", highlight=False)


def cmd_lens(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saescope.interpret.lens import logit_lens
    from saescope.models import load_model

    model = load_model(args.model, dtype=args.dtype, device=args.device)
    lens = logit_lens(model, args.prompt, position=args.position)
    targets = [t for t in (args.targets or "").split(",") if t]
    target_ids = [_single_token(model, t) for t in targets]
    probs, ranks = lens.track(target_ids) if targets else (None, None)
    table = Table(
        title=f"logit lens at {lens.prompt_tokens[lens.position]!r} (position {lens.position})"
    )
    table.add_column("stage", no_wrap=True)
    table.add_column(f"top {args.top}")
    for t in targets:
        table.add_column(f"{t!r} p / rank", justify="right")
    for s, (stage, row) in enumerate(zip(lens.stages, lens.top(args.top), strict=True)):
        cells = (
            [f"{p:.2f} / {int(r)}" for p, r in zip(probs[s], ranks[s], strict=True)]
            if (probs is not None and ranks is not None)
            else []
        )
        table.add_row(stage, "  ".join(f"{tok!r} {p:.2f}" for tok, p in row), *cells)
    Console().print(table)
    if args.plot:
        from saescope.interpret.plots import plot_logit_lens

        print(f"heatmap written to {plot_logit_lens(lens, args.plot, k=args.top)}")


def cmd_neurons(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from saescope.interpret.lens import predict
    from saescope.interpret.neurons import top_contexts, top_neurons
    from saescope.models import load_model
    from saescope.steer import clamp_neurons

    console = Console()
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    if args.prompt and args.unit is None:
        table = Table(title=f"top units of {args.site} at position {args.position}")
        table.add_column("unit", justify="right")
        table.add_column("value", justify="right")
        for unit, value in top_neurons(model, args.prompt, args.site, args.position, args.top):
            table.add_row(str(unit), f"{value:.3f}")
        console.print(table)
    if args.unit is not None and args.clamp is not None:
        if not args.prompt:
            raise SaescopeError("--clamp needs --prompt")
        before = predict(model, args.prompt).top(args.top)
        with clamp_neurons(model, args.site, {args.unit: args.clamp}):
            after = predict(model, args.prompt).top(args.top)
        table = Table(title=f"next token, {args.site}:{args.unit} clamped to {args.clamp}")
        table.add_column("clean")
        table.add_column("clamped")
        for (a, p), (b, q) in zip(before, after, strict=True):
            table.add_row(f"{a!r} {p:.3f}", f"{b!r} {q:.3f}")
        console.print(table)
    if args.unit is not None and args.contexts:
        from saescope.data import load_corpus

        found = top_contexts(
            model,
            args.site,
            [args.unit],
            load_corpus(args.dataset),
            tokens=args.tokens,
            k=args.contexts,
        )
        console.print(
            f"[bold]{args.site}:{args.unit}[/bold], top contexts in "
            f"{args.tokens:,} tokens of {args.dataset}"
        )
        for example in found[args.unit]:
            scale = max(max(example.activations), 1e-6)
            line = Text(f"{example.activation:8.2f}  ")
            for token, value in zip(example.tokens, example.activations, strict=True):
                shade = int(255 * (1 - max(0.0, value) / scale))
                line.append(token.replace("\n", "⏎"), style=f"on rgb(255,{shade},{shade})")
            console.print(line)


def _single_token(model, text: str) -> int:  # model: LanguageModel, imported lazily
    from saescope.errors import SaescopeError

    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise SaescopeError(
            f"target {text!r} is {len(ids)} tokens; give single tokens "
            "(mind the leading space: ' high')"
        )
    return int(ids[0])


def cmd_quickstart(args: argparse.Namespace) -> None:
    from saescope.quickstart import run_quickstart

    run_quickstart(Path(args.out), tokens=args.tokens, site=args.site, epochs=args.epochs)


def _print_cache(cache) -> None:
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


def _architectures() -> list[str]:
    from saescope.sae import ARCHITECTURES

    return list(ARCHITECTURES)


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

    def add(name: str, handler: Handler, help_: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=description,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        p.set_defaults(handler=handler)
        return p

    p = add(
        "quickstart",
        cmd_quickstart,
        "run every stage on the embedded default model",
        "Run the whole pipeline on Gemma 3 270M and the offline corpus (no network): "
        "capture activations at one site into a cache, train a TopK SAE (width 8192, k=32) "
        "on them and score it on held-out tokens. The first run converts the model from "
        "GGUF once (about a minute). Reruns reuse what is done. Prints where every output is.",
    )
    p.add_argument("--out", default="saescope-out", help="directory for every output")
    p.add_argument(
        "--tokens",
        type=int,
        default=524_288,
        help="training tokens to capture (one 65,536-token shard more is held out)",
    )
    p.add_argument("--site", default="layers.6.resid_post", help="hook site")
    p.add_argument("--epochs", type=int, default=2, help="passes over the training tokens")

    p = add(
        "capture",
        cmd_capture,
        "capture activations at hook sites into a cache",
        "Run the model over a corpus and write the activations at one or more sites into "
        "sharded safetensors files with a manifest. The forward pass stops after the "
        "deepest site. Killed? Run the same command with --resume. Under torchrun each "
        "rank captures its share into the same directory.",
    )
    _add_model_args(p)
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
    _add_data_args(p)
    p.add_argument(
        "--store-dtype", default=None, help="dtype on disk: fp32, bf16, fp16 (default: the model's)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="contexts per forward pass")
    p.add_argument("--shard-rows", type=int, default=65_536, help="rows per shard file")
    p.add_argument("--resume", action="store_true", help="continue an interrupted capture")

    p = add(
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
    p.add_argument("--width", type=_ints, default=None, help="latents, e.g. 8192 or 4096,16384")
    p.add_argument(
        "--expansion",
        type=_ints,
        default=[16],
        help="width = expansion x d_in (ignored when --width is given)",
    )
    p.add_argument("--k", type=_ints, default=[32], help="active latents (topk, batchtopk)")
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

    p = add(
        "predict",
        cmd_predict,
        "the next-token distribution after a prompt",
        "Print the model's top next tokens with probabilities (its own final soft-capping "
        "included) and, with --continue N, a greedy or sampled continuation.",
    )
    _add_model_args(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--top", type=int, default=10, help="how many tokens to list")
    p.add_argument(
        "--continue",
        dest="continue_tokens",
        type=int,
        default=0,
        metavar="N",
        help="also generate N tokens",
    )
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--samples", type=int, default=1, help="with --sample: how many rollouts")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)

    p = add(
        "lens",
        cmd_lens,
        "the logit lens: the prediction forming layer by layer",
        "Read the residual stream at one position through the model's final norm and "
        "unembedding after the embeddings and after every attention and MLP block, and "
        "show the top tokens at each stage; --targets tracks chosen tokens' probability "
        "and rank; --plot writes a heatmap.",
    )
    _add_model_args(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--position", type=int, default=-1, help="token position (default: last)")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--targets", help="comma-separated single tokens to track, e.g. ' high, low'")
    p.add_argument("--plot", help="write the heatmap to this .png")

    p = add(
        "neurons",
        cmd_neurons,
        "neurons: top ones on a prompt, top contexts, clamping",
        "With --prompt: the units of --site (neurons at layers.<i>.mlp_act) with the largest "
        "values at --position. With --unit and --contexts K: the K corpus contexts where "
        "that unit fires most (one streaming pass over --tokens). With --unit, --clamp V "
        "and --prompt: the next-token distribution with the unit clamped to V.",
    )
    _add_model_args(p)
    p.add_argument("--site", default="layers.6.mlp_act", help="hook site (neurons: mlp_act)")
    p.add_argument("--prompt")
    p.add_argument("--position", type=int, default=-1)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--unit", type=int, help="one neuron / unit index")
    p.add_argument("--clamp", type=float, help="value to clamp --unit to")
    p.add_argument("--contexts", type=int, default=0, metavar="K", help="show K top contexts")
    p.add_argument("--tokens", type=int, default=50_000, help="corpus tokens to scan")
    p.add_argument("--dataset", default="default")

    p = add(
        "inspect",
        cmd_inspect,
        "describe an activation cache",
        "Print what a cache holds (model, sites, rows, size); --verify checks every "
        "shard's checksum.",
    )
    p.add_argument("cache", help="cache directory")
    p.add_argument("--verify", action="store_true", help="read every shard and check its sha256")

    p = add(
        "sites",
        cmd_sites,
        "list a model's hook sites and their widths",
        "Load a model and list the hook sites saescope can read and edit in it.",
    )
    _add_model_args(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
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
    except KeyboardInterrupt:
        log.error("interrupted; a capture can continue with --resume")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
