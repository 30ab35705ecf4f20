"""``saescope attribute``: the SAE features (or neurons) a logit depends on, checked by ablation."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from saescope.cli.common import add_command, add_model_args
from saescope.cli.model import add_prompt_args, check_prompt
from saescope.errors import SaescopeError


def cmd_attribute(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saescope.cli.steer import _load_sae
    from saescope.models import load_model
    from saescope.steer.attribute import attribute, verify

    if not args.sae and not args.site:
        raise SaescopeError(
            "give --sae DIR (rank its features) or --site SITE (rank raw units, e.g. "
            "layers.12.mlp_act)"
        )
    if args.top < 1 or args.verify < 0:
        raise SaescopeError(f"--top must be >= 1 and --verify >= 0, got {args.top}, {args.verify}")
    for flag, value in (("--clamp-multiple", args.clamp_multiple), ("--clamp", args.clamp)):
        if value is not None and not math.isfinite(value):
            raise SaescopeError(f"{flag} must be a finite number, got {value}")
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    check_prompt(model, args)
    sae = _load_sae(args.sae, model) if args.sae else None
    index = _open_index(args.index)
    start = time.perf_counter()
    a = attribute(
        model, args.prompt, args.target, args.versus, sae=sae, site=args.site, top=args.top
    )
    attributed = time.perf_counter() - start
    checked = verify(
        model,
        a,
        [s.unit for s in a.units[: args.verify]],
        clamp_multiple=args.clamp_multiple,
        clamp_to=args.clamp,
    )
    verified = time.perf_counter() - start - attributed
    by_unit = {v.unit: v for v in checked}
    records = _records(index, [s.unit for s in a.units]) if index is not None else {}

    clamp_rule = f"{args.clamp:g}" if args.clamp is not None else f"{args.clamp_multiple:g} x peak"
    console = Console()
    metric = f"logit[{args.target!r}]" + (f" - logit[{args.versus!r}]" if args.versus else "")
    console.print(
        f"m = {metric} after {args.prompt!r}: {a.metric:.3f}; p({args.target!r}) = "
        f"{a.probability:.4f}"
    )
    kind = "features" if a.kind == "sae" else "units"
    table = Table(title=f"{kind} of {a.site} by |attribution| to m")
    columns = [
        ("#", "right"),
        (kind[:-1], "right"),
        ("attribution", "right"),
        ("act @ token", "left"),
        ("ablate Δm", "right"),
        ("clamp to", "right"),
        ("clamp Δm", "right"),
        (f"p({args.target!r}) clamped", "right"),
    ]
    if index is not None:
        columns += [("density", "right"), ("description", "left")]
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for i, s in enumerate(a.units, 1):
        v = by_unit.get(s.unit)
        row = [
            str(i),
            str(s.unit),
            f"{s.attribution:+.3f}",
            f"{s.activation:.2f} @ {s.position} {a.prompt_tokens[s.position]!r}",
            *(
                (
                    f"{v.ablation_delta:+.3f}",
                    f"{v.clamp_value:.3g}",
                    f"{v.clamp_delta:+.3f}",
                    f"{v.probability:.4f} → {v.clamped_probability:.4f}",
                )
                if v
                else ("",) * 4
            ),
        ]
        if index is not None:
            row += _index_cells(records.get(s.unit))
        table.add_row(*row)
    console.print(table if a.units else f"no unit of {a.site} contributes to m on this prompt")
    console.print(
        f"attribution ≈ -(ablate Δm) to first order; {len(checked)} verified by ablating / "
        f"clamping (to {clamp_rule}) at every token. {attributed:.1f} s attribution (float32), {verified:.1f} s "
        "verification",
        highlight=False,
    )


def _open_index(path: str | None) -> Any:
    if path is None:
        return None
    from saescope.interpret.query import FeatureIndex

    return FeatureIndex(path)


def _records(index: Any, units: list[int]) -> dict[int, Any]:
    """The index's record of each unit it has (an index of another SAE may have fewer)."""
    out = {}
    for u in units:
        try:
            out[u] = index.feature(u)
        except SaescopeError:
            continue
    return out


def _index_cells(record: Any) -> list[str]:
    if record is None:
        return ["", "not in the index"]
    density = f"{record.density:.2%}" + (" DENSE" if record.dense else "")
    return [density, record.description or "–"]


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "attribute",
        cmd_attribute,
        "rank SAE features or neurons by their effect on a logit, checked by ablation",
        "Rank the SAE's features (or, with --site alone, the site's raw units: neurons at "
        "layers.<i>.mlp_act) by activation x gradient of m = logit[--target] - "
        "logit[--versus] (or logit[--target]) at the last position, summed over the prompt's "
        "tokens: attribution patching, a first-order estimate of what ablating each unit "
        "removes from m, from one forward and one backward pass in float32. The top --verify "
        "are then checked for real: each is zero-ablated at every token (SAE error term kept) "
        "for the exact change of m, and clamped to --clamp-multiple x its largest "
        "activation on the prompt (or to --clamp) for the target's probability.",
    )
    add_model_args(p)
    p.set_defaults(dtype="fp32")  # the gradient pass runs in float32 either way
    p.add_argument("--sae", help="SAE directory (rank its features)")
    p.add_argument("--site", help="site (default: the SAE's); alone, rank its raw units")
    add_prompt_args(p)
    p.add_argument("--target", required=True, help="one token, e.g. ' questionable'")
    p.add_argument("--versus", help="one token to subtract, e.g. ' high': m is the difference")
    p.add_argument("--index", help="feature index, for descriptions and densities")
    p.add_argument("--top", type=int, default=10, help="units to list")
    p.add_argument("--verify", type=int, default=5, help="of those, how many to ablate and clamp")
    p.add_argument(
        "--clamp-multiple",
        type=float,
        default=2.0,
        help="clamp each verified unit to this multiple of its largest activation on the prompt",
    )
    p.add_argument("--clamp", type=float, help="clamp to this value instead")
