"""Shared pieces of the command line: argument groups, the subcommand helper, and options read
from the config dataclasses (default, choices, type and help from the field itself)."""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

from saescope.models.loading import DEFAULT_MODEL

Handler = Callable[[argparse.Namespace], None]


def add_command(
    sub: Any, name: str, handler: Handler, help_: str, description: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help=help_,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.set_defaults(handler=handler)
    return p


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string under each field), whitespace joined.

    Read from the source with ``ast``: the docstrings are the one written account of each field,
    so the CLI's help is not a second copy of them.
    """
    [node] = ast.parse(textwrap.dedent(inspect.getsource(cls))).body
    assert isinstance(node, ast.ClassDef)
    docs = {}
    for stmt, after in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass field ``name`` (its factory called if it has one)."""
    f = {f.name: f for f in fields(cls)}[name]
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


def field_choices(cls: type, name: str) -> list[Any]:
    """The values of the ``Literal`` in field ``name``'s type (``None`` left out); [] if none."""
    return _literals(get_type_hints(cls)[name])


def _literals(hint: Any) -> list[Any]:
    if get_origin(hint) is Literal:
        return list(get_args(hint))
    return [v for arg in get_args(hint) for v in _literals(arg)]


def _scalar_type(hint: Any) -> Any:
    """``int`` for ``int`` or ``int | None``: what argparse converts the text with."""
    options = [a for a in get_args(hint) if a is not type(None)] or [hint]
    return options[0]


def add_field(
    p: argparse.ArgumentParser,
    flag: str,
    cls: type,
    name: str,
    help: str | None = None,
    **kwargs: Any,
) -> None:
    """Add ``flag`` for field ``name`` of config ``cls``: its default, its ``Literal`` choices,
    its type, and its docstring as help unless ``help`` is given; ``kwargs`` override."""
    default = field_default(cls, name)
    text = help if help is not None else field_docs(cls).get(name, "")
    options: dict[str, Any] = {"default": default, "help": text.replace("%", "%%")}
    choices = field_choices(cls, name)
    if choices:
        options["choices"] = choices
    elif isinstance(default, bool):
        options["action"] = argparse.BooleanOptionalAction
    else:
        options["type"] = _scalar_type(get_type_hints(cls)[name])
    p.add_argument(flag, **(options | kwargs))


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"alias {DEFAULT_MODEL} (default, embedded), a local directory, a .gguf file, "
        "or a hub id",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        help="model dtype: auto (bf16 where the device runs it fast), fp32, bf16, fp16",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")


def add_data_args(
    p: argparse.ArgumentParser, shown: bool = True, keep_special: str | None = None
) -> None:
    """The corpus and context options (``shown=False``: accepted, left out of the help;
    ``keep_special``: the command's own help for ``--keep-special``)."""
    from saescope.data import ContextConfig

    def help_(text: str | None) -> str | None:
        return text if shown else argparse.SUPPRESS

    p.add_argument(
        "--dataset",
        default="default",
        help="'default' (Wikipedia summaries + Gutenberg books), a .txt/.jsonl/"
        ".parquet file, a datasets directory (save_to_disk) or a folder of files",
    )
    p.add_argument(
        "--text-field", default="text", help=help_("field holding the text (.jsonl/.parquet)")
    )
    add_field(p, "--context-size", ContextConfig, "context_size", help=help_(None))
    if shown:
        add_field(p, "--seed", ContextConfig, "seed", help="document shuffle seed", type=int)
    p.add_argument(
        "--keep-special",
        action="store_true",
        help=help_(
            keep_special
            or "keep BOS/EOS/pad positions (excluded by default: their norms are "
            "15-25x a typical token's)"
        ),
    )


def context_config(args: argparse.Namespace):  # -> ContextConfig
    from saescope.data import ContextConfig

    return ContextConfig(
        context_size=args.context_size, seed=args.seed, exclude_special=not args.keep_special
    )


def ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err


def add_encoder_arg(p: argparse.ArgumentParser) -> None:
    """``--encoder SPEC``: code with a pursuit over the SAE's decoder (``saescope.coding``)."""
    from saescope.coding import SPELLING

    p.add_argument("--encoder", metavar="SPEC", help=f"make codes with {SPELLING}; default: "
                   "the SAE's own encoder")  # fmt: skip


def add_outlier_args(p: argparse.ArgumentParser) -> None:
    """``--outliers`` and ``--outlier-multiple``: the one outlier policy of train, eval and
    index (``saescope.activations.outliers.OutlierPolicy``; read back by ``outlier_policy``)."""
    from saescope.activations.outliers import OutlierPolicy

    add_field(p, "--outliers", OutlierPolicy, "mode")
    add_field(p, "--outlier-multiple", OutlierPolicy, "multiple")


def outlier_policy(args: argparse.Namespace):  # -> OutlierPolicy
    from saescope.activations.outliers import OutlierPolicy

    return OutlierPolicy(mode=args.outliers, multiple=args.outlier_multiple)


SAE_OPTIONS = ("sae", "narrow", "wide")
"""The options that name SAEs (``--sae``, families' ``--narrow`` / ``--wide``): each command
that has one also gets ``--format``."""


def add_format_options(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand that takes an SAE a ``--format`` (default: detected)."""
    from saescope.sae.formats import FORMATS

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                dests = {a.dest for a in sub._actions}
                if dests & set(SAE_OPTIONS) and "sae_format" not in dests:
                    sub.add_argument(
                        "--format",
                        dest="sae_format",
                        choices=list(FORMATS),
                        help="the SAE files' format (default: detected from the files)",
                    )
                add_format_options(sub)


def apply_sae_format(args: argparse.Namespace) -> None:
    """Spell each SAE path as ``FORMAT:PATH`` (what ``load_sae`` reads) under ``--format``."""
    fmt = getattr(args, "sae_format", None)
    if fmt is None:
        return
    for name in SAE_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, f"{fmt}:{value}")
        elif isinstance(value, list):
            setattr(args, name, [f"{fmt}:{v}" for v in value])
