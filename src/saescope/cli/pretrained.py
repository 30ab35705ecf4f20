"""``saescope pretrained list``: the known pretrained SAE releases."""

from __future__ import annotations

import argparse
from typing import Any

from saescope.cli.common import add_command


def cmd_list(args: argparse.Namespace) -> None:
    from saescope.cli.render import Table, console
    from saescope.errors import SaescopeError
    from saescope.sae.pretrained import RELEASES, releases

    found = releases(args.model)
    if not found:
        models = sorted({r.model for r in RELEASES.values()})
        raise SaescopeError(
            f"no known release for model {args.model!r}; releases exist for {', '.join(models)}"
        )
    table = Table(title="pretrained SAE releases (load with --sae RELEASE/SAE_ID)")
    for column in ("release", "repository", "model", "site", "layers", "widths", "L0", "example id"):
        table.add_column(column)
    for r in found:
        site = f"layers.<L>.{r.site_kind}" if r.site_kind else f"none ({r.hook})"
        layers = f"{r.layers[0]}-{r.layers[-1]}" if len(r.layers) > 6 else ",".join(map(str, r.layers))
        table.add_row(r.name, r.repo, r.model, site, layers, ", ".join(r.widths), r.l0, r.example())
    out = console()
    out.print(table)
    out.print(f"{len(found)} releases; files are read from the Hugging Face cache, else the hub.")


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "pretrained",
        cmd_list,
        "list known pretrained SAE releases",
        "Pretrained SAEs (Gemma Scope 1 and 2, Llama Scope): `pretrained list` names each "
        "release with its model, saescope site, layers, widths and L0s. Any --sae takes "
        "RELEASE/SAE_ID (e.g. gemma-scope-2-270m-pt-res/layer_5_width_16k_l0_small), read from "
        "the Hugging Face cache or hub, or a local directory in any supported format.",
    )
    actions = p.add_subparsers(dest="pretrained_command", required=True, metavar="ACTION")
    q = actions.add_parser("list", help="list the releases", description="List the known releases.")
    q.add_argument("--model", help="only releases for this model (alias or hub id)")
    q.set_defaults(handler=cmd_list)
