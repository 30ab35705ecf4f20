"""``saescope steer``: clamp, add, scale or ablate SAE features and neurons; see the effect."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from saescope.cli.common import add_command, add_encoder_arg, add_model_args
from saescope.cli.model import add_prompt_args, check_prompt, check_top
from saescope.errors import SaescopeError
from saescope.steer import OPS

log = logging.getLogger(__name__)


def _feature_edits(args: argparse.Namespace) -> list:  # -> list[Edit]
    from saescope.steer import Edit

    return [Edit.parse(text, op) for op in OPS for text in getattr(args, op) or []]


def _neuron_interventions(args: argparse.Namespace, where: Any) -> list:
    """``layers.6.mlp_act:1393=-160`` -> one UnitIntervention per site."""
    from saescope.steer import Edit, UnitIntervention

    by_site: dict[str, list] = {}
    for text in args.neuron or []:
        site, sep, edit = text.rpartition(":")
        if not sep or not site:
            raise SaescopeError(
                f"cannot read --neuron {text!r}: expected SITE:UNIT=VALUE, e.g. "
                "layers.6.mlp_act:1393=-160"
            )
        by_site.setdefault(site, []).append(Edit.parse(edit, "clamp"))
    return [UnitIntervention(site, tuple(edits), where) for site, edits in by_site.items()]


def _vector_interventions(args: argparse.Namespace, model: Any, where: Any) -> list:
    """``V.safetensors=COEF`` -> one VectorIntervention at the site the file names."""
    from saescope.steer import VectorIntervention, load_vector

    out = []
    for text in args.vector or []:
        path, sep, coef = text.rpartition("=")
        try:
            coefficient = float(coef)
        except ValueError:
            sep = ""
        if not sep or not path:
            raise SaescopeError(
                f"cannot read --vector {text!r}: expected FILE=COEF, e.g. anger.safetensors=4"
            )
        vector = load_vector(path, model)
        out.append(VectorIntervention(vector.site, vector.vector, coefficient, where))
    return out


def _positions(text: str) -> Any:  # -> Positions
    from saescope.steer import ALL, GENERATED, Positions

    if text == "all":
        return ALL
    if text == "generated":
        return GENERATED
    try:
        return Positions(indices=tuple(int(v) for v in text.split(",")))
    except ValueError as err:
        raise SaescopeError(
            f"--positions {text!r}: expected all, generated, or token indices like 1,2,3"
        ) from err


def _sweep(text: str) -> tuple[int, list[float]]:
    feature, _, values = text.partition("=")
    expected = f"cannot read --sweep {text!r}: expected FEATURE=V1,V2,..., e.g. 8249=0,50,100"
    try:
        parsed = int(feature), [float(v) for v in values.split(",") if v.strip()]
    except ValueError as err:
        raise SaescopeError(expected) from err
    if not parsed[1]:
        raise SaescopeError(f"{expected} (no values given)")
    return parsed


def cmd_steer(args: argparse.Namespace) -> None:
    from saescope.models import load_model
    from saescope.steer import FeatureIntervention, GenerationConfig, compare

    edits, where = _feature_edits(args), _positions(args.positions)
    if (edits or args.sweep) and not args.sae:
        raise SaescopeError("feature edits (--clamp/--add/--scale/--ablate/--sweep) need --sae")
    neurons = _neuron_interventions(args, where)
    if not (edits or neurons or args.sweep or args.vector):
        raise SaescopeError(
            "nothing to do: give --clamp/--add/--scale/--ablate/--sweep with --sae, --neuron "
            "or --vector"
        )
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    check_prompt(model, args)
    vectors = _vector_interventions(args, model, where)
    check_top(model, args.top)
    sae = _load_sae(args.sae, model, args.encoder) if args.sae else None
    config = GenerationConfig(
        max_new_tokens=args.max_new,
        samples=args.samples,
        sample=args.sample or args.samples > 1,
        temperature=args.temperature,
        seed=args.seed,
    )

    def interventions(extra: tuple = ()) -> list:
        fixed = edits + list(extra)
        feature = (
            [FeatureIntervention(sae, tuple(fixed), where, error_term=not args.no_error_term)]
            if fixed and sae is not None
            else []
        )
        return feature + neurons + vectors

    if not args.sweep:
        _render(compare(model, args.prompt, interventions(), config), args, _describe(args))
        return
    from saescope.steer import Edit

    feature, values = _sweep(args.sweep)
    first = compare(
        model, args.prompt, interventions((Edit(feature, args.sweep_op, values[0]),)), config
    )
    rows = [(values[0], first)]
    for value in values[1:]:
        edit = Edit(feature, args.sweep_op, value)
        clean = (first.clean, first.clean_rollouts)
        rows.append((value, compare(model, args.prompt, interventions((edit,)), config, clean)))
    _render_sweep(rows, args, feature)


def _load_sae(path: str, model: Any, encoder: str | None = None) -> Any:
    from saescope.coding import with_encoder
    from saescope.sae import load_sae

    sae = with_encoder(load_sae(path, device=model.device), encoder)
    trained_on = sae.cfg.metadata.model_name
    if trained_on and trained_on != model.name:
        log.warning("the SAE was trained on %r, the model is %r", trained_on, model.name)
    return sae


def _describe(args: argparse.Namespace) -> str:
    parts = [f"{op} {text}" for op in OPS for text in getattr(args, op) or []]
    parts += [f"neuron {text}" for text in args.neuron or []]
    parts += [f"vector {text}" for text in args.vector or []]
    if args.no_error_term:
        parts.append("no error term")
    return ", ".join(parts)


def _render(result: Any, args: argparse.Namespace, title: str) -> None:
    from saescope.cli.render import Table, console

    out = console()
    table = Table(title=f"next token after {args.prompt!r}: clean vs {title}")
    table.add_column("#", justify="right")
    table.add_column("clean")
    table.add_column("steered")
    table.add_column("most increased (clean -> steered)")
    rows = zip(
        result.clean.top(args.top),
        result.steered.top(args.top),
        result.top_changes(args.top),
        strict=True,
    )
    for i, ((a, p), (b, q), (c, before, after)) in enumerate(rows, 1):
        table.add_row(
            str(i), f"{a!r} {p:.3f}", f"{b!r} {q:.3f}", f"{c!r} {before:.3f} -> {after:.3f}"
        )
    out.print(table)
    texts = Table(title="continuations (same seed)", show_lines=True)
    texts.add_column("clean", ratio=1)
    texts.add_column("steered", ratio=1)
    for clean, steered in zip(
        result.clean_rollouts.texts, result.steered_rollouts.texts, strict=True
    ):
        texts.add_row(clean, steered)
    out.print(texts)


def _render_sweep(rows: list, args: argparse.Namespace, feature: int) -> None:
    from saescope.cli.render import Table, console

    table = Table(
        title=f"{args.sweep_op} feature {feature}: next token after {args.prompt!r} and the "
        "continuation",
        show_lines=True,
    )
    table.add_column(args.sweep_op, justify="right")
    table.add_column(f"top {min(args.top, 3)}")
    table.add_column("continuation (sample 1)")
    clean = rows[0][1]
    table.add_row(
        "clean",
        "  ".join(f"{t!r} {p:.2f}" for t, p in clean.clean.top(min(args.top, 3))),
        clean.clean_rollouts.texts[0],
    )
    for value, result in rows:
        top = "  ".join(f"{t!r} {p:.2f}" for t, p in result.steered.top(min(args.top, 3)))
        table.add_row(f"{value:g}", top, result.steered_rollouts.texts[0])
    console().print(table)


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "steer",
        cmd_steer,
        "steer generation: clamp, add, scale or ablate SAE features and neurons; add vectors",
        "Edit SAE features at the SAE's site (--clamp/--add/--scale/--ablate, several "
        "allowed) and/or MLP neurons (--neuron), add steering vectors (--vector FILE=COEF, "
        "from `saescope vector`; an aligned vector adds row p at token index p), then print "
        "the next-token distribution after --prompt without and with the edits, and clean and steered continuations "
        "side by side (same seed). --sweep FEATURE=V1,V2,... shows the progression over "
        "values instead. Feature edits keep the SAE's error term (x - x_hat), so an edit "
        "that changes nothing leaves the model exactly as it was; --no-error-term runs the "
        "model on the SAE's reconstruction. Special tokens (BOS) are never edited. Latent "
        "values are in the SAE's units: see a feature's typical activations before "
        "choosing a clamp value (Golden Gate Claude clamped to 10x the maximum).",
    )
    add_model_args(p)
    p.add_argument("--sae", help="SAE directory (needed for feature edits)")
    add_encoder_arg(p)
    add_prompt_args(p)
    for op, effect in OPS.items():
        meta = "I" if op == "ablate" else "I=V"
        p.add_argument(
            f"--{op}", action="append", metavar=meta, help=f"feature I: {effect}; repeatable"
        )
    p.add_argument(
        "--neuron",
        action="append",
        metavar="SITE:UNIT=V",
        help="clamp a neuron, e.g. layers.6.mlp_act:1393=-160; repeatable",
    )
    p.add_argument(
        "--vector",
        action="append",
        metavar="FILE=COEF",
        help="add COEF x a vector from `saescope vector` at its site; repeatable",
    )
    p.add_argument(
        "--sweep", metavar="I=V1,V2,...", help="one row per value of feature I (with the edits)"
    )
    p.add_argument("--sweep-op", choices=list(OPS), default="clamp", help="what --sweep does")
    p.add_argument(
        "--positions",
        default="all",
        help="tokens to edit: all, generated (new tokens only), or indices from BOS = 0: 1,2,3",
    )
    p.add_argument("--no-error-term", action="store_true", help="run on the reconstruction")
    p.add_argument("--max-new", type=int, default=40, help="tokens to generate")
    p.add_argument("--samples", type=int, default=1, help="rollouts (more than 1: sampled)")
    p.add_argument("--sample", action="store_true", help="sample even with --samples 1")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=10, help="next tokens to list")
