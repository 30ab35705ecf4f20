"""``saescope pretrained list``: the known pretrained SAE releases."""

from __future__ import annotations

import argparse
from typing import Any

from saescope.cli.common import add_command


def cmd_list(args: argparse.Namespace) -> None:
    from saescope.cli.render import console
    from saescope.errors import SaescopeError
    from saescope.sae.pretrained import RELEASES, releases

    found = releases(args.model)
    if not found:
        models = sorted({r.model for r in RELEASES.values()})
        raise SaescopeError(
            f"no known release for model {args.model!r}; releases exist for {', '.join(models)}"
        )
    out = console()
    # One block per release rather than a table: the names are meant to be copied onto the
    # command line, and eight columns would break them across lines on any terminal.
    for r in found:
        site = f"layers.<L>.{r.site_kind}" if r.site_kind else f"none in saescope ({r.hook})"
        layers = (
            f"{r.layers[0]}-{r.layers[-1]}" if len(r.layers) > 6 else ",".join(map(str, r.layers))
        )
        out.print(f"[bold]{r.name}[/bold]  ({r.repo}, {r.format})", highlight=False, soft_wrap=True)
        out.print(
            f"  model {r.model}, site {site}, layers {layers}, widths {', '.join(r.widths)}",
            highlight=False,
            soft_wrap=True,
        )
        out.print(f"  L0 {r.l0}", highlight=False, soft_wrap=True)
        out.print(f"  --sae {r.name}/{r.example()}", highlight=False, soft_wrap=True)
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
