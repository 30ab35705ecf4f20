"""Per-architecture-family facts: the registry that turns a Site into a torch module and tells
the head's conventions (the final norm's gain, the final-logit soft-cap).

Adding a family is one ``register_family`` call naming where its decoder layers live, which
submodule of a layer produces each site, and how its head differs from the plain one. Paths are
dotted attribute paths. Nothing else in saescope sniffs class names or model types for these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

from torch import Tensor, nn

from saescope.errors import SaescopeError


@dataclass(frozen=True)
class Family:
    """Where the hookable modules of one architecture family live."""

    name: str
    """Registry key, e.g. ``"llama"``."""
    model_types: tuple[str, ...]
    """``config.model_type`` values served by this family."""
    layers: tuple[str, ...]
    """Candidate paths (from the CausalLM) to the ModuleList of decoder layers; first found wins."""
    attn_out: str
    """Submodule of a layer whose output is the attention block's addition to the residual."""
    mlp_out: str
    """Submodule of a layer whose output is the MLP block's addition to the residual."""
    mlp_act: str
    """Submodule of a layer whose *input* is the MLP neurons (the down projection)."""
    final_norm: tuple[str, ...]
    """Candidate paths to the final norm applied before the unembedding."""
    mlp_in: str = "mlp"
    """Submodule of a layer whose *input* is what the MLP reads (after the pre-MLP norm)."""
    unembed: str = "lm_head"
    """Path to the unembedding (``[vocab, d_model]`` weight)."""
    norm_gain_offset: float = 0.0
    """Added to a norm's ``weight`` to give its gain: 1.0 for Gemma's RMSNorm, which scales by
    ``1 + weight``; 0.0 where the gain is the weight itself (LayerNorm, Llama's RMSNorm)."""
    logit_softcap: str | None = None
    """Config attribute (of the text config) holding the final-logit soft-cap, applied as
    ``cap * tanh(logits / cap)`` (``"final_logit_softcapping"`` in Gemma 2/3); None: no soft-cap.
    Decoder layers need no field: the output form (Tensor or tuple) depends on the transformers
    version, not the family, and ``models.forward.hidden_of`` reads both."""

    def __post_init__(self) -> None:
        for name in ("model_types", "layers", "final_norm"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not value:
                raise SaescopeError(
                    f"Family {self.name!r}: {name} must be a non-empty tuple of strings, "
                    f"got {value!r}"
                )
        if not math.isfinite(self.norm_gain_offset):
            raise SaescopeError(
                f"Family {self.name!r}: norm_gain_offset must be a finite number (0.0: gain = "
                f"weight, 1.0: gain = 1 + weight), got {self.norm_gain_offset!r}"
            )


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family`` to the registry; a model type served twice is an error."""
    for other in FAMILIES.values():
        if shared := set(other.model_types) & set(family.model_types):
            raise SaescopeError(f"model types {sorted(shared)} already served by {other.name!r}")
    FAMILIES[family.name] = family
    return family


def supported_model_types() -> list[str]:
    return sorted(t for f in FAMILIES.values() for t in f.model_types)


def family_for(model_type: str) -> Family:
    """The family serving ``config.model_type``, or an error listing what is supported."""
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise SaescopeError(
        f"no hook-site family for model type {model_type!r}; supported: "
        f"{', '.join(supported_model_types())}. Add one with saescope.models.register_family."
    )


def get_module(root: nn.Module, path: str) -> nn.Module:
    """``root.<path>`` for a dotted path (numeric parts index ModuleLists)."""
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
    return module


def find_module(root: nn.Module, candidates: tuple[str, ...], what: str) -> nn.Module:
    for path in candidates:
        try:
            return get_module(root, path)
        except (AttributeError, IndexError):
            continue
    raise SaescopeError(
        f"{type(root).__name__} has no {what} at any of {', '.join(candidates)}; "
        "is this model of the family its config says?"
    )


def mlp_down_weight(family: Family, layer: nn.Module) -> Tensor:
    """(d_mlp, d_model): row ``i`` is what one unit of MLP neuron ``i`` adds to the MLP's output
    (before any post-MLP norm, e.g. Gemma's ``post_feedforward_layernorm``). Detached."""
    down = get_module(layer, family.mlp_act)
    weight = cast(Tensor, down.weight).detach()
    # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out).
    return weight.t() if isinstance(down, nn.Linear) else weight


_GEMMA_POST_NORM: dict[str, Any] = dict(
    attn_out="post_attention_layernorm",
    mlp_out="post_feedforward_layernorm",
    mlp_act="mlp.down_proj",
)
_LLAMA_LIKE: dict[str, Any] = dict(attn_out="self_attn", mlp_out="mlp", mlp_act="mlp.down_proj")

_GEMMA_HEAD: dict[str, Any] = dict(norm_gain_offset=1.0, logit_softcap="final_logit_softcapping")

register_family(
    Family(
        name="gemma3",
        model_types=("gemma3_text", "gemma3"),
        layers=("model.layers", "model.language_model.layers"),
        final_norm=("model.norm", "model.language_model.norm"),
        **_GEMMA_POST_NORM,
        **_GEMMA_HEAD,
    )
)
register_family(
    Family(
        name="gemma2",
        model_types=("gemma2",),
        layers=("model.layers",),
        final_norm=("model.norm",),
        **_GEMMA_POST_NORM,
        **_GEMMA_HEAD,
    )
)
register_family(
    Family(
        name="llama",
        model_types=("llama", "mistral", "qwen2", "qwen3"),
        layers=("model.layers",),
        final_norm=("model.norm",),
        **_LLAMA_LIKE,
    )
)
register_family(
    Family(  # Gemma 1: Llama's layout with Gemma's ``1 + w`` norms, and no logit soft-cap
        name="gemma",
        model_types=("gemma",),
        layers=("model.layers",),
        final_norm=("model.norm",),
        norm_gain_offset=1.0,
        **_LLAMA_LIKE,
    )
)
register_family(
    Family(
        name="gpt2",
        model_types=("gpt2",),
        layers=("transformer.h",),
        attn_out="attn",
        mlp_out="mlp",
        mlp_act="mlp.c_proj",
        final_norm=("transformer.ln_f",),
    )
)
register_family(
    Family(
        name="gpt_neox",
        model_types=("gpt_neox",),
        layers=("gpt_neox.layers",),
        # The dropouts are identities in eval mode and sit exactly where each block's output is
        # added to the residual stream (parallel or sequential residual alike).
        attn_out="post_attention_dropout",
        mlp_out="post_mlp_dropout",
        mlp_act="mlp.dense_4h_to_h",
        final_norm=("gpt_neox.final_layer_norm",),
    )
)
