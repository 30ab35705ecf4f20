"""Encoder specs: the text of ``--encoder`` (``gp:k=32``, ``mp:k=16``, ``omp:k=8``,
``topk:k=16``) as a frozen config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from saescope.errors import SaescopeError

Kind = Literal["gp", "mp", "omp", "topk"]
KINDS: tuple[str, ...] = get_args(Kind)
SPELLING = (
    "gp:k=32 (gradient pursuit), mp:k=16 (matching pursuit), omp:k=8 (orthogonal matching "
    "pursuit) or topk:k=16 (the SAE's own encoder truncated to its k largest latents); "
    "options: nonneg=0 (allow negative codes), bf16=1 (choose atoms in bf16)"
)


@dataclass(frozen=True)
class EncoderSpec:
    """How codes are made from an SAE's dictionary instead of (or on top of) its encoder."""

    kind: Kind
    """gp, mp, omp: that pursuit over the decoder; topk: the SAE's encoder, truncated."""
    k: int
    """Pursuit steps (at most k latents per row), or the latents topk keeps."""
    nonneg: bool = True
    """Codes are >= 0, as SAE latents are (pursuits only)."""
    bf16: bool = False
    """Choose atoms with a bf16 matmul; values stay float32 (pursuits only)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SaescopeError(
                f"encoder kind must be one of {', '.join(KINDS)}, got {self.kind!r}"
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k <= 0:
            raise SaescopeError(f"encoder k must be a positive integer, got {self.k!r}")

    def __str__(self) -> str:
        extra = ("" if self.nonneg else ",nonneg=0") + (",bf16=1" if self.bf16 else "")
        return f"{self.kind}:k={self.k}{extra}"


def parse_encoder(text: str) -> EncoderSpec:
    """The spec of ``kind:k=K[,nonneg=0][,bf16=1]``; refuses anything else, saying the spelling."""
    kind, _, rest = text.strip().partition(":")
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or key in options:
            raise SaescopeError(f"--encoder {text!r}: bad or repeated option {part!r}; {SPELLING}")
        options[key.strip()] = value.strip()
    unknown = sorted(set(options) - {"k", "nonneg", "bf16"})
    if kind not in KINDS or "k" not in options or unknown:
        raise SaescopeError(f"--encoder {text!r}: expected {SPELLING}")
    try:
        k = int(options["k"])
        flags = {key: _flag(options[key]) for key in ("nonneg", "bf16") if key in options}
    except ValueError as err:
        raise SaescopeError(f"--encoder {text!r}: {err}; expected {SPELLING}") from err
    if kind == "topk" and flags:
        raise SaescopeError(f"--encoder {text!r}: nonneg and bf16 apply to the pursuits only")
    return EncoderSpec(kind, k, **flags)  # type: ignore[arg-type]


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError(f"a flag is 0 or 1, got {value!r}")
    return value == "1"
