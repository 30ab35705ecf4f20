"""``saescope serve``: the local web app over one or more feature indexes."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from saescope.cli.common import add_command
from saescope.errors import SaescopeError

log = logging.getLogger(__name__)


def _named(values: list[str] | None, option: str, default_name: str | None) -> dict[str, str]:
    """``NAME=VALUE`` (or a bare VALUE for ``default_name``) -> {name: value}."""
    out: dict[str, str] = {}
    for text in values or []:
        name, sep, value = text.partition("=")
        if not sep:
            if default_name is None:
                raise SaescopeError(f"{option} {text!r}: with several indexes give NAME={text}")
            name, value = default_name, text
        if name in out:
            raise SaescopeError(f"{option}: the name {name!r} is given twice")
        out[name] = value
    return out


def index_specs(values: list[str]) -> list[tuple[str, str]]:
    """``--index`` values -> (name, path); a bare path is named by its file stem."""
    specs: list[tuple[str, str]] = []
    for text in values:
        name, sep, path = text.partition("=")
        if not sep:
            name, path = Path(text).stem, text
        if name in {n for n, _ in specs}:
            raise SaescopeError(
                f"--index: two indexes are named {name!r}; name them: --index NAME=PATH"
            )
        specs.append((name, path))
    return specs


def cmd_serve(args: argparse.Namespace) -> None:
    from saescope.serve import require_starlette

    require_starlette()
    import uvicorn

    from saescope.serve.app import create_app, open_served
    from saescope.serve.state import Limits

    specs = index_specs(args.index)
    only = specs[0][0] if len(specs) == 1 else None
    served = open_served(
        specs, _named(args.sae, "--sae", only), _named(args.metrics, "--metrics", only)
    )
    model = None
    if args.model != "none":
        names = {s.index.meta.get("model") for s in served}
        if args.model is None and len(names) > 1:
            raise SaescopeError(
                f"the indexes were built on different models ({', '.join(map(str, names))}); "
                "serve them separately or give --model"
            )
        from saescope.models import load_model

        model = load_model(str(args.model or names.pop()), dtype=args.dtype, device=args.device)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s: anyone who can reach this machine can run the model; the app has "
            "no login",
            args.host,
        )
    limits = Limits(
        prompt_tokens=args.max_prompt_tokens,
        new_tokens=args.max_new_tokens,
        samples=args.max_samples,
        queued_jobs=args.max_queue,
    )
    app = create_app(served, model, limits)
    for s in served:
        log.info("serving %s at http://%s:%d/i/%s", s.index.path, args.host, args.port, s.name)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "serve",
        cmd_serve,
        "browse features, inspect prompts and steer in a local web app",
        "One process: the SAE overview (provenance, metrics, density histogram, a sortable "
        "feature table, search, the feature map), a page per feature (with a live test-text "
        "box, JSON export and a steering link), the prompt inspector and the steering page. "
        "Indexes are opened read-only; the model is loaded once and every model job waits in "
        "one queue. Binds to 127.0.0.1 unless --host says otherwise. Needs the 'serve' extra.",
    )
    p.add_argument(
        "--index",
        action="append",
        required=True,
        metavar="[NAME=]INDEX.db",
        help="an index to serve (repeatable; the name defaults to the file's stem)",
    )
    p.add_argument(
        "--sae",
        action="append",
        metavar="[NAME=]DIR",
        help="the SAE of an index (default: the path the index records)",
    )
    p.add_argument(
        "--metrics",
        action="append",
        metavar="[NAME=]FILE",
        help="evaluation metrics JSON (default: metrics.json or heldout.json beside the SAE)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="the model (default: the one the index names); 'none' to browse without one",
    )
    p.add_argument("--dtype", default="auto", help="model dtype: auto, fp32, bf16, fp16")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--max-prompt-tokens", type=int, default=256, metavar="N")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
    p.add_argument("--max-samples", type=int, default=4, metavar="N")
    p.add_argument("--max-queue", type=int, default=8, metavar="N", help="model jobs at once")
