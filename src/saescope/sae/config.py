"""SAE configuration: what a saved SAE needs to be rebuilt and to know what it was trained on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from saescope.errors import SaescopeError

DTYPES = ("float32", "float64", "float16", "bfloat16")
"""The torch floating dtypes an SAE's weights may have (``SAEConfig.dtype``)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_optional(name: str, value: object, kind: type, what: str) -> None:
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if value is not None and not ok:
        raise SaescopeError(f"{name} must be {what} or null, found {value!r}")


@dataclass(frozen=True)
class SAEMetadata:
    """Where the SAE's inputs came from (SAELens ``metadata`` keys, plus saescope's own)."""

    model_name: str | None = None
    hook_name: str | None = None
    """TransformerLens spelling, e.g. ``blocks.6.hook_resid_post`` (what SAELens expects)."""
    site: str | None = None
    """saescope spelling, e.g. ``layers.6.resid_post``."""
    hook_name_out: str | None = None
    """A transcoder's output site, TransformerLens spelling (SAELens ``hook_name_out``)."""
    site_out: str | None = None
    """A transcoder's output site, saescope spelling, e.g. ``layers.6.mlp_out``."""
    context_size: int | None = None
    prepend_bos: bool = True
    exclude_special_tokens: bool = True
    dataset_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (training tokens, final metrics, ...)."""

    def __post_init__(self) -> None:
        for name in (
            "model_name",
            "hook_name",
            "site",
            "hook_name_out",
            "site_out",
            "dataset_path",
        ):
            _check_optional(f"metadata.{name}", getattr(self, name), str, "a string")
        _check_optional("metadata.context_size", self.context_size, int, "an integer")
        for name in ("prepend_bos", "exclude_special_tokens"):
            if not isinstance(getattr(self, name), bool):
                raise SaescopeError(
                    f"metadata.{name} must be true or false, found {getattr(self, name)!r}"
                )


@dataclass(frozen=True)
class SAEConfig:
    """Shape and architecture of an SAE. Saved as ``cfg.json`` with SAELens v6 keys."""

    d_in: int
    d_sae: int
    architecture: str = "topk"
    """A key of ``saescope.sae.ARCHITECTURES``."""
    k: int | None = None
    """Active latents per row (topk) or per row on average over a batch (batchtopk)."""
    apply_b_dec_to_input: bool = True
    """Subtract b_dec from the input before encoding (the pre-encoder bias)."""
    dtype: str = "float32"
    """The weights' torch dtype, one of ``DTYPES``."""
    matryoshka_widths: tuple[int, ...] | None = None
    """matryoshka: the nested prefix widths, strictly increasing and ending at d_sae (SAELens's
    ``matryoshka_widths``); None: ``default_prefix_widths(d_sae)``. Other architectures: None."""
    metadata: SAEMetadata = field(default_factory=SAEMetadata)
    d_out: int | None = None
    """Set for a transcoder: the width of its output site (the MLP's output, say), which it
    predicts from its input site instead of reconstructing the input; None for an SAE, whose
    output width is ``d_in``. ``W_dec`` is (d_sae, d_out) and ``b_dec`` (d_out,)."""
    skip: bool = False
    """A transcoder's affine skip connection ``W_skip`` (d_out, d_in), added as
    ``x @ W_skip.T`` (SAELens orientation); only with ``d_out``."""

    def __post_init__(self) -> None:
        from saescope.sae.registry import ARCHITECTURES

        # Types first: a float d_in would be truncated by int() and a string k would fail
        # later with a TypeError deep inside an encoder.
        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if not _is_int(value):
                raise SaescopeError(f"{name} must be an integer, found {value!r}")
        _check_optional("k", self.k, int, "an integer")
        if not isinstance(self.apply_b_dec_to_input, bool):
            raise SaescopeError(
                f"apply_b_dec_to_input must be true or false, found {self.apply_b_dec_to_input!r}"
            )
        if self.dtype not in DTYPES:
            raise SaescopeError(f"dtype must be one of {', '.join(DTYPES)}, found {self.dtype!r}")
        if not isinstance(self.metadata, SAEMetadata):
            raise SaescopeError(f"metadata must be an SAEMetadata, found {self.metadata!r}")
        if not isinstance(self.architecture, str) or self.architecture not in ARCHITECTURES:
            raise SaescopeError(
                f"unknown SAE architecture {self.architecture!r}; expected one of "
                f"{', '.join(sorted(ARCHITECTURES))}"
            )
        if self.d_in < 1 or self.d_sae < 1:
            raise SaescopeError(f"d_in and d_sae must be >= 1, got {self.d_in}, {self.d_sae}")
        _check_optional("d_out", self.d_out, int, "an integer")
        if self.d_out is not None and self.d_out < 1:
            raise SaescopeError(f"d_out must be >= 1, got {self.d_out}")
        if not isinstance(self.skip, bool):
            raise SaescopeError(f"skip must be true or false, found {self.skip!r}")
        if self.skip and self.d_out is None:
            raise SaescopeError(
                "skip=True needs d_out: only a transcoder has a skip connection; set d_out to "
                "the output site's width"
            )
        if self.d_out is not None and self.apply_b_dec_to_input:
            raise SaescopeError(
                "a transcoder's b_dec lives at its output site, so it cannot be subtracted from "
                "the input: set apply_b_dec_to_input=False with d_out"
            )
        needs_k = ARCHITECTURES[self.architecture].needs_k
        if needs_k and not (self.k and 0 < self.k <= self.d_sae):
            raise SaescopeError(
                f"architecture {self.architecture} needs 0 < k <= d_sae={self.d_sae}, got {self.k}"
            )
        self._check_prefixes(ARCHITECTURES[self.architecture].uses_prefixes)

    def _check_prefixes(self, uses_prefixes: bool) -> None:
        widths = self.matryoshka_widths
        if widths is None:
            return
        if not uses_prefixes:
            raise SaescopeError(
                f"matryoshka_widths is only for architectures with nested prefixes (matryoshka), "
                f"got {widths!r} for {self.architecture}; leave it unset"
            )
        if not (
            isinstance(widths, tuple)
            and widths
            and all(_is_int(w) for w in widths)
            and all(a < b for a, b in zip((0, *widths), widths, strict=False))
            and widths[-1] == self.d_sae
        ):
            raise SaescopeError(
                f"matryoshka_widths must be a tuple of strictly increasing integers > 0 ending "
                f"at d_sae={self.d_sae}, e.g. ({self.d_sae // 4}, {self.d_sae}); got {widths!r}"
            )

    @property
    def prefix_widths(self) -> tuple[int, ...]:
        """The nested prefix widths a matryoshka SAE trains (``matryoshka_widths`` or its
        default); ``(d_sae,)``, the whole dictionary, for every other architecture."""
        from saescope.sae.registry import ARCHITECTURES

        if not ARCHITECTURES[self.architecture].uses_prefixes:
            return (self.d_sae,)
        return self.matryoshka_widths or default_prefix_widths(self.d_sae)

    @property
    def is_transcoder(self) -> bool:
        """Whether this predicts another site (``d_out`` set) rather than reconstructing."""
        return self.d_out is not None

    @property
    def out_dim(self) -> int:
        """The width of what ``SAE.forward`` returns: ``d_out`` for a transcoder, else d_in."""
        return self.d_in if self.d_out is None else self.d_out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_prefix_widths(d_sae: int) -> tuple[int, ...]:
    """d_sae / 64, / 16, / 4 and d_sae (those >= 1): a factor 4 between levels, as in Bussmann
    et al. (2025), whose 65k dictionaries nest prefixes of 128 / 512 / 2048 / 8192 / ..."""
    return tuple(sorted({w for w in (d_sae // 64, d_sae // 16, d_sae // 4) if w >= 1} | {d_sae}))
