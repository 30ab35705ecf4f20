"""``LanguageModel``: a Hugging Face causal LM with its tokenizer and hook-site family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from saescope.errors import SaescopeError
from saescope.models.families import Family, family_for, find_module, get_module
from saescope.models.sites import SITE_KINDS, Site


@dataclass
class LanguageModel:
    """A loaded causal LM. ``hf`` is the transformers model, untouched: no wrapper layers."""

    hf: Any
    """The transformers ``PreTrainedModel`` (typed loosely: transformers' stubs are partial)."""
    tokenizer: Any
    name: str
    """What the user asked for (alias, hub id or path); recorded in every artifact."""
    family: Family

    @classmethod
    def wrap(cls, hf: Any, tokenizer: Any, name: str) -> LanguageModel:
        """Wrap an already-loaded transformers model; its family comes from its config."""
        family = family_for(hf.config.model_type)
        hf.eval().requires_grad_(False)
        return cls(hf=hf, tokenizer=tokenizer, name=name, family=family)

    @property
    def layers(self) -> nn.ModuleList:
        return find_module(self.hf, self.family.layers, "decoder layers")  # type: ignore[return-value]

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def max_positions(self) -> int | None:
        """The longest context the position embeddings cover (None if the config says not)."""
        config = self.hf.config.get_text_config()
        for name in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    def site(self, name: str | Site) -> Site:
        """Parse ``name`` and check that this model has it; errors list what it has."""
        site = Site.parse(name)
        if site.layer >= self.n_layers:
            raise SaescopeError(
                f"{self.name} has {self.n_layers} layers (0..{self.n_layers - 1}); "
                f"site {site.name} asks for layer {site.layer}"
            )
        return site

    def available_sites(self) -> list[str]:
        return [f"layers.{{0..{self.n_layers - 1}}}.{kind}" for kind in SITE_KINDS]

    def module_for(self, site: Site) -> tuple[nn.Module, str]:
        """The module carrying ``site`` and whether the value is its ``"input"`` or ``"output"``."""
        layer = self.layers[site.layer]
        if site.kind == "resid_pre":
            return layer, "input"
        if site.kind == "resid_post":
            return layer, "output"
        path = getattr(self.family, site.kind)
        return get_module(layer, path), "input" if site.kind in ("mlp_in", "mlp_act") else "output"

    def site_dim(self, name: str | Site) -> int:
        """Width of the activation vector at a site (d_model, or the MLP width for mlp_act)."""
        site = self.site(name)
        if site.kind != "mlp_act":
            return int(self.hf.config.get_text_config().hidden_size)
        module, _ = self.module_for(site)
        if isinstance(module, nn.Linear):
            return module.in_features
        weight: Any = module.weight  # GPT-2's Conv1D stores it as [in, out]
        return int(weight.shape[0])
