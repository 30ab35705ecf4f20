"""Hook-site names: ``layers.{i}.{kind}``, with the TransformerLens spelling accepted.

A site is a place in the residual-stream computation of one decoder layer. In forward order:

    resid_pre  -> attn_out -> mlp_in -> mlp_act -> mlp_out -> resid_post

``attn_out`` and ``mlp_out`` are what the sub-block adds to the residual stream (after any
post-norm, as in Gemma 2/3), ``mlp_in`` is what the MLP reads (the residual stream after the
pre-MLP norm: a transcoder's input), ``mlp_act`` is the MLP's hidden activations (the neurons, the
input of the down projection), and ``resid_post = resid_pre + attn_out + mlp_out``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from saescope.errors import SaescopeError

SITE_KINDS: tuple[str, ...] = (
    "resid_pre",
    "attn_out",
    "mlp_in",
    "mlp_act",
    "mlp_out",
    "resid_post",
)
"""Site kinds within a layer, in the order the forward pass reaches them."""

_TL_HOOKS = {
    "hook_resid_pre": "resid_pre",
    "hook_attn_out": "attn_out",
    "ln2.hook_normalized": "mlp_in",
    "mlp.hook_post": "mlp_act",
    "hook_mlp_out": "mlp_out",
    "hook_resid_post": "resid_post",
}
_KIND_TO_TL = {kind: hook for hook, kind in _TL_HOOKS.items()}
_NATIVE = re.compile(r"^layers\.(\d+)\.(\w+)$")
_TL = re.compile(r"^blocks\.(\d+)\.([\w.]+)$")


@dataclass(frozen=True)
class Site:
    """A hook site: decoder layer ``layer`` (0-based) and ``kind`` (one of SITE_KINDS)."""

    layer: int
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise SaescopeError(
                f"unknown site kind {self.kind!r}; expected one of {', '.join(SITE_KINDS)}"
            )
        if self.layer < 0:
            raise SaescopeError(f"site layer must be >= 0, got {self.layer}")

    @classmethod
    def parse(cls, name: str | Site) -> Site:
        """Parse ``layers.6.resid_post`` or ``blocks.6.hook_resid_post``."""
        if isinstance(name, Site):
            return name
        if m := _NATIVE.match(name):
            return cls(int(m.group(1)), m.group(2))
        if (m := _TL.match(name)) and m.group(2) in _TL_HOOKS:
            return cls(int(m.group(1)), _TL_HOOKS[m.group(2)])
        raise SaescopeError(
            f"cannot parse hook site {name!r}; expected 'layers.<i>.<kind>' with kind in "
            f"{{{', '.join(SITE_KINDS)}}}, or the TransformerLens spelling "
            f"'blocks.<i>.<hook>' with hook in {{{', '.join(_TL_HOOKS)}}}"
        )

    @property
    def name(self) -> str:
        return f"layers.{self.layer}.{self.kind}"

    @property
    def tl_name(self) -> str:
        """The TransformerLens spelling, written into exported metadata."""
        return f"blocks.{self.layer}.{_KIND_TO_TL[self.kind]}"

    @property
    def order(self) -> int:
        """Position of this site in the forward pass of its layer."""
        return SITE_KINDS.index(self.kind)

    def __str__(self) -> str:
        return self.name

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Site):
            return NotImplemented
        return (self.layer, self.order) < (other.layer, other.order)
