"""Commands that look inside a model: ``sites``, ``predict``, ``lens``, ``pictures``,
``neurons``."""

from __future__ import annotations

import argparse
from typing import Any

from saescope.cli.common import add_command, add_model_args
from saescope.errors import SaescopeError

MAX_PROMPT_TOKENS = 2048
"""Default cap on prompt tokens for the interactive commands (predict, lens, neurons, features,
steer): on CPU a forward pass grows with the prompt (a 21,539-token prompt gave no answer in
600 s with Gemma 3 270M), so a prompt pasted by mistake fails at once; --max-prompt-tokens
raises it."""


def add_prompt_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--prompt`` and ``--max-prompt-tokens``; check them with ``check_prompt``."""
    p.add_argument("--prompt", required=required)
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=MAX_PROMPT_TOKENS,
        metavar="N",
        help=f"refuse longer prompts (default {MAX_PROMPT_TOKENS}; at most the model's context)",
    )


def check_prompt(model: Any, args: argparse.Namespace) -> None:  # model: LanguageModel
    """Refuse an empty prompt or one longer than --max-prompt-tokens or the model's context,
    before any forward pass starts."""
    if not args.prompt:
        raise SaescopeError("--prompt is empty; give the text to run the model on")
    if args.max_prompt_tokens < 1:
        raise SaescopeError(f"--max-prompt-tokens must be >= 1, got {args.max_prompt_tokens}")
    n = len(model.tokenizer(args.prompt)["input_ids"])
    context = _context_length(model)
    if context is not None and n > context:
        raise SaescopeError(
            f"the prompt is {n:,} tokens, {model.name} takes at most {context:,}; shorten it"
        )
    if n > args.max_prompt_tokens:
        raise SaescopeError(
            f"the prompt is {n:,} tokens, more than --max-prompt-tokens {args.max_prompt_tokens:,}"
            " (the default keeps interactive commands quick); shorten it or raise the limit"
        )


def check_top(model: Any, top: int, flag: str = "--top") -> None:  # model: LanguageModel
    """``top`` next tokens to list: between 1 and the vocabulary size."""
    vocab = int(model.hf.get_output_embeddings().weight.shape[0])
    if not 1 <= top <= vocab:
        raise SaescopeError(
            f"{flag} must be between 1 and the vocabulary size ({vocab:,}), got {top:,}"
        )


def _context_length(model: Any) -> int | None:
    config = model.hf.config
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


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


def cmd_predict(args: argparse.Namespace) -> None:
    import math

    if not (math.isfinite(args.temperature) and args.temperature > 0):  # even if unused: a typo
        raise SaescopeError(f"--temperature must be a finite number > 0, got {args.temperature}")
    from saescope.cli.render import Table, console
    from saescope.interpret.lens import continue_text, predict
    from saescope.models import load_model

    model = load_model(args.model, dtype=args.dtype, device=args.device)
    check_prompt(model, args)
    check_top(model, args.top)
    if args.continue_tokens < 0 or args.samples < 1:
        raise SaescopeError(
            f"--continue must be >= 0 and --samples >= 1, got {args.continue_tokens} and "
            f"{args.samples}"
        )
    prediction = predict(model, args.prompt)
    table = Table(title=f"next token after {args.prompt!r}")
    table.add_column("#", justify="right")
    table.add_column("token")
    table.add_column("probability", justify="right")
    for i, (token, p) in enumerate(prediction.top(args.top), 1):
        table.add_row(str(i), repr(token), f"{p:.4f}")
    out = console()
    out.print(table)
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
            out.print(f"[bold]{args.prompt}[/bold]{text}", highlight=False)


def cmd_lens(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saescope.interpret.lens import logit_lens
    from saescope.models import load_model

    targets = [t for t in (args.targets or "").split(",") if t]
    if args.targets is not None and not targets:
        raise SaescopeError(
            f"--targets {args.targets!r} names no tokens; give comma-separated tokens, e.g. "
            "' high, low', or leave --targets out"
        )
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    check_prompt(model, args)
    check_top(model, args.top)
    lens = logit_lens(model, args.prompt, position=args.position)
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

        tracked = dict(zip(targets, target_ids, strict=True))
        print(f"heatmap written to {plot_logit_lens(lens, args.plot, args.top, tracked)}")


def cmd_pictures(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saescope.interpret.pictures import clipped_values, colour_limits, residual_vectors
    from saescope.interpret.plots import plot_pictures
    from saescope.models import load_model

    layers = _parse_layers(args.layers)
    if not 0 < args.clip <= 100:
        raise SaescopeError(f"--clip must be a percentile in (0, 100], got {args.clip}")
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    check_prompt(model, args)
    vectors = residual_vectors(model, args.prompt, position=args.position, layers=layers)
    limits = colour_limits(vectors, args.scale, args.clip)
    clipped = clipped_values(vectors, limits)
    ids = model.tokenizer(args.prompt, return_tensors="pt")["input_ids"][0]  # (T,)
    position = args.position % len(ids)  # residual_vectors has checked the range
    token = model.tokenizer.decode([int(ids[position])])
    title = f"residual stream at token {position} ({token!r}) of {args.prompt!r}"
    written = plot_pictures(vectors, args.out, title=title, limits=limits)
    table = Table(title=f"clipped dimensions (--scale {args.scale}, --clip {args.clip:g})")
    table.add_column("picture", no_wrap=True)
    table.add_column("limit", justify="right")
    table.add_column("clipped", justify="right")
    table.add_column("largest clipped (dimension=value)")
    for name, pairs in clipped.items():
        shown = ", ".join(f"{d}={v:.4g}" for d, v in pairs[:6])
        more = f", +{len(pairs) - 6} more" if len(pairs) > 6 else ""
        table.add_row(name, f"{limits[name]:.4g}", str(len(pairs)), shown + more)
    Console().print(table)
    print(f"pictures written to {written}")


def _parse_layers(text: str | None) -> list[int] | None:
    """``--layers 0,3,6`` or ``0-17`` or both (``0-3,9``); None means all layers. The range
    check against the model is ``residual_vectors``'s."""
    if text is None:
        return None
    layers: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            low, _, high = part.partition("-")
            layers += range(int(low), int(high or low) + 1)
    except ValueError:
        raise SaescopeError(
            f"--layers {text!r} is not a list of layer numbers; give e.g. '0,6,12' or '0-17'"
        ) from None
    if not layers:
        raise SaescopeError(f"--layers {text!r} names no layer; give e.g. '0,6,12' or '0-17'")
    return layers


def cmd_neurons(args: argparse.Namespace) -> None:
    from saescope.cli.render import Table, console, example_text, plain
    from saescope.interpret.lens import predict
    from saescope.interpret.neurons import top_contexts, top_neurons
    from saescope.models import load_model
    from saescope.steer import clamp_neurons

    out = console()
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    if args.prompt is not None:
        check_prompt(model, args)
    if args.top < 1:
        raise SaescopeError(f"--top must be >= 1, got {args.top}")
    if args.prompt and args.unit is None:
        units = top_neurons(model, args.prompt, args.site, args.position, args.top, args.rank)
        table = Table(title=f"top units of {args.site} at position {args.position}, by {args.rank}")
        table.add_column("unit", justify="right")
        table.add_column("activation", justify="right")
        table.add_column("contribution", justify="right")
        for u in units:
            table.add_row(str(u.unit), f"{u.activation:+.3f}", f"{u.contribution:.3f}")
        out.print(table)
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
        out.print(table)
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
        out.print(
            f"[bold]{args.site}:{args.unit}[/bold], top contexts in "
            f"{args.tokens:,} tokens of {args.dataset}"
        )
        for example in found[args.unit]:
            scale = max(max(example.activations), 1e-6)
            out.print(example_text(example, scale, mark=plain(out)))


def _single_token(model: Any, text: str) -> int:  # model: LanguageModel
    from saescope.steer.attribute import single_token

    return single_token(model, text)


def register(sub: Any) -> None:
    from saescope.interpret.neurons import NEURON_RANKINGS
    from saescope.interpret.pictures import SCALES

    p = add_command(
        sub,
        "sites",
        cmd_sites,
        "list a model's hook sites and their widths",
        "Load a model and list the hook sites saescope can read and edit in it.",
    )
    add_model_args(p)

    p = add_command(
        sub,
        "predict",
        cmd_predict,
        "the next-token distribution after a prompt",
        "Print the model's top next tokens with probabilities (its own final soft-capping "
        "included) and, with --continue N, a greedy or sampled continuation.",
    )
    add_model_args(p)
    add_prompt_args(p)
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

    p = add_command(
        sub,
        "lens",
        cmd_lens,
        "the logit lens: the prediction forming layer by layer",
        "Read the residual stream at one position through the model's final norm and "
        "unembedding after the embeddings and after every attention and MLP block, and "
        "show the top tokens at each stage; --targets tracks chosen tokens' probability "
        "and rank; --plot writes a heatmap.",
    )
    add_model_args(p)
    add_prompt_args(p)
    p.add_argument("--position", type=int, default=-1, help="token position (default: last)")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--targets", help="comma-separated single tokens to track, e.g. ' high, low'")
    p.add_argument(
        "--plot",
        help="write the heatmap (and with --targets their probability and rank) to this .png",
    )

    p = add_command(
        sub,
        "pictures",
        cmd_pictures,
        "residual-stream pictures, layer by layer",
        "Draw the residual stream at one position after the embeddings and after each layer "
        "as a near-square image (640 -> 20 x 32), on a colour scale that a few huge "
        "dimensions do not grey out; print the dimensions the scale clips.",
    )
    add_model_args(p)
    add_prompt_args(p)
    p.add_argument("--layers", help="layers to draw, e.g. '0,6,12' or '0-17' (default: all)")
    p.add_argument("--position", type=int, default=-1, help="token position (default: last)")
    p.add_argument(
        "--scale",
        choices=SCALES,
        default="percentile",
        help="percentile: one symmetric scale for all pictures, clipped at the --clip "
        "percentile of |value|; shared: one scale, the largest |value|; symmetric: each "
        "picture on its own largest |value|",
    )
    p.add_argument("--clip", type=float, default=99.0, help="percentile for --scale percentile")
    p.add_argument("--out", required=True, help="the .png to write")

    p = add_command(
        sub,
        "neurons",
        cmd_neurons,
        "neurons: top ones on a prompt, top contexts, clamping",
        "With --prompt: the units of --site (neurons at layers.<i>.mlp_act) that matter most "
        "at --position, negative ones included, each with its activation and its output "
        "contribution (|activation| x the L2 norm of its row of the MLP's down projection: "
        "what it writes). With --unit and --contexts K: the K corpus contexts where "
        "that unit fires most (one streaming pass over --tokens). With --unit, --clamp V "
        "and --prompt: the next-token distribution with the unit clamped to V.",
    )
    add_model_args(p)
    p.add_argument("--site", default="layers.6.mlp_act", help="hook site (neurons: mlp_act)")
    add_prompt_args(p, required=False)
    p.add_argument("--position", type=int, default=-1)
    p.add_argument("--top", type=int, default=10)
    p.add_argument(
        "--rank",
        choices=NEURON_RANKINGS,
        default=NEURON_RANKINGS[0],
        help="order --prompt's units by output contribution (default: a neuron with a large "
        "activation but tiny output weights barely changes the model, one with a small "
        "activation and large weights can) or by |activation|",
    )
    p.add_argument("--unit", type=int, help="one neuron / unit index")
    p.add_argument("--clamp", type=float, help="value to clamp --unit to")
    p.add_argument("--contexts", type=int, default=0, metavar="K", help="show K top contexts")
    p.add_argument("--tokens", type=int, default=50_000, help="corpus tokens to scan")
    p.add_argument("--dataset", default="default")
