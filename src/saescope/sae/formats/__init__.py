"""Readers and writers of the SAE file formats in the field, and ``load_sae``, which detects them.

``FORMATS`` maps a format's name to its reader (``detect(path) -> bool``, ``read(path, device)
-> SAE``); detection tries them in order and takes the first that claims the path. Every reader
checks each tensor's shape against d_in and d_sae (never its name), folds any input
normalisation into the weights, and records ``metadata.extra['provenance']`` (format, path,
files, original config) on every SAE it reads from another tool's files (saescope's own
directories are the format itself and stay as saved). Writers: ``save_sae`` (SAELens v6, saescope's own), ``save_sparsify``,
``save_gemma_scope_2``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from saescope.errors import SaescopeError
from saescope.sae.base import SAE
from saescope.sae.formats import (
    dictionary_learning,
    gemma_scope,
    goodfire,
    llama_scope,
    saelens,
    sparsify,
)
from saescope.sae.formats.gemma_scope import save_gemma_scope_2
from saescope.sae.formats.sparsify import save_sparsify


@dataclass(frozen=True)
class Format:
    """One file format: how to recognise it and how to read it."""

    name: str
    detect: Callable[[Path], bool]
    """True when ``path`` (a directory, or a file for single-file formats) looks like it."""
    read: Callable[..., SAE]
    """``read(path, device, **options)``."""
    description: str
    """What its files are, for help texts."""
    options: tuple[str, ...] = ()
    """Integer options ``read`` takes, given as ``PATH?name=value`` (see ``split_options``)."""


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            saelens.NAME,
            saelens.detect,
            saelens.read,
            "SAELens v6 / pre-6.0 (and saescope): cfg.json + sae_weights.safetensors",
        ),
        Format(
            sparsify.NAME,
            sparsify.detect,
            sparsify.read,
            "EleutherAI sparsify: cfg.json + sae.safetensors",
        ),
        Format(
            gemma_scope.NAME_2,
            gemma_scope.detect_2,
            gemma_scope.read_2,
            "Gemma Scope 2: config.json + params.safetensors (a cross-layer transcoder's "
            "params_layer_L.safetensors too; PATH?out_layer=J picks its output layer)",
            options=("out_layer",),
        ),
        Format(
            gemma_scope.NAME_1,
            gemma_scope.detect_1,
            gemma_scope.read_1,
            "Gemma Scope (Gemma 2): params.npz",
        ),
        Format(
            dictionary_learning.NAME,
            dictionary_learning.detect,
            dictionary_learning.read,
            "dictionary_learning: ae.pt + config.json",
        ),
        Format(
            llama_scope.NAME,
            llama_scope.detect,
            llama_scope.read,
            "Llama Scope: hyperparams.json + checkpoints/final.safetensors",
        ),
        Format(
            goodfire.NAME,
            goodfire.detect,
            goodfire.read,
            "Goodfire: one .pt/.pth state dict (encoder_linear, decoder_linear)",
        ),
    )
}
"""Every readable format, by name, in the order detection tries them."""


def detect_format(path: str | Path) -> str:
    """The name of the format of ``path``; an error listing what each format expects if none."""
    root = Path(path)
    if not root.exists():
        raise SaescopeError(f"{root} does not exist; expected an SAE directory or file")
    for fmt in FORMATS.values():
        if fmt.detect(root):
            return fmt.name
    listing = "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())
    raise SaescopeError(
        f"{root} is not an SAE directory in any format saescope reads (found {_listing(root)}); "
        "expected one of: "
        f"{listing}"
    )


def _listing(root: Path) -> str:
    if root.is_file():
        return f"the file {root.name}"
    names = sorted(p.name for p in root.iterdir())[:8]
    return ", ".join(names) if names else "an empty directory"


def split_spec(spec: str | Path) -> tuple[str | None, str]:
    """``FORMAT:PATH`` -> (FORMAT, PATH); a plain path or pretrained name -> (None, it).

    The prefix form is how ``--format`` reaches the library functions that take SAE paths.
    """
    text = str(spec)
    head, sep, tail = text.partition(":")
    if sep and head in FORMATS:
        return head, tail
    return None, text


def split_options(text: str) -> tuple[str, dict[str, int]]:
    """``PATH?out_layer=7`` -> (PATH, {"out_layer": 7}); a plain path -> (it, {}).

    Options choose among the SAEs one file holds (a cross-layer transcoder's output layers).
    A path with a literal ``?`` that exists is taken as it is.
    """
    head, sep, tail = text.rpartition("?")
    if not sep or Path(text).exists():
        return text, {}
    options: dict[str, int] = {}
    for item in tail.split("&"):
        name, eq, value = item.partition("=")
        if not eq or not value.strip().isdigit():
            raise SaescopeError(
                f"{text}: option {item!r} is not NAME=INTEGER (e.g. {head}?out_layer=7)"
            )
        options[name.strip()] = int(value)
    return head, options


def load_sae(
    path: str | Path, format: str | None = None, device: str | torch.device = "cpu"
) -> SAE:
    """Read the SAE at ``path`` in ``format`` (detected when None).

    ``path`` is a directory or file in any format of ``FORMATS``, ``FORMAT:PATH``, or a
    pretrained name (``gemma-scope-2-270m-pt-res/layer_6_width_16k_l0_small``, see
    ``saescope.sae.pretrained``), resolved through the Hugging Face cache or hub; any of them
    may end in ``?NAME=VALUE`` options of its format (``Format.options``).
    """
    prefixed, text = split_spec(path)
    text, options = split_options(text)
    if prefixed is not None and format is not None and prefixed != format:
        raise SaescopeError(f"{path}: names format {prefixed}, but format={format!r} was given")
    format = format or prefixed
    if format is not None and format not in FORMATS:
        raise SaescopeError(f"unknown SAE format {format!r}; expected one of {', '.join(FORMATS)}")
    root = Path(text)
    if not root.exists():
        from saescope.sae.pretrained import is_pretrained_name, resolve

        if is_pretrained_name(text):
            root, fmt = resolve(text)
            format = format or fmt
    if format is None:
        format = detect_format(root)
    elif not root.exists():
        raise SaescopeError(f"{root} does not exist; expected an SAE directory or file ({format})")
    unknown = sorted(set(options) - set(FORMATS[format].options))
    if unknown:
        takes = ", ".join(FORMATS[format].options) or "none"
        raise SaescopeError(
            f"{path}: format {format} takes no option {', '.join(unknown)} (its options: {takes})"
        )
    return FORMATS[format].read(root, device, **options).to(device).eval()


def weights_file(sae: SAE, path: str | Path) -> Path:
    """The file holding ``sae``'s weights, read from ``path`` (what an index hashes)."""
    prov = sae.cfg.metadata.extra.get("provenance")
    if isinstance(prov, dict) and prov.get("files"):
        return Path(prov["path"]) / prov["files"][0]
    _, text = split_spec(path)
    return Path(text) / saelens.WEIGHTS


def source_dir(sae: SAE, path: str | Path) -> Path:
    """The directory (or file) ``sae`` was read from, given the ``path`` it was loaded by; for
    one view of a file holding several (a CLT layer), the spec that reads that view back."""
    prov = sae.cfg.metadata.extra.get("provenance")
    if isinstance(prov, dict) and isinstance(prov.get("source"), str):
        return Path(prov["source"])
    if isinstance(prov, dict) and isinstance(prov.get("path"), str):
        return Path(prov["path"])
    return Path(split_spec(path)[1]).resolve()


__all__ = [
    "FORMATS",
    "Format",
    "detect_format",
    "load_sae",
    "save_gemma_scope_2",
    "save_sparsify",
    "source_dir",
    "split_options",
    "split_spec",
    "weights_file",
]
