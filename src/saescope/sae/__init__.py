"""SAE configs and modules, a registry keyed by architecture, and save / load."""

from saescope.sae.base import SAE, Latents, SAEOutput
from saescope.sae.config import SAEConfig, SAEMetadata
from saescope.sae.io import load_sae, save_sae
from saescope.sae.registry import ARCHITECTURES, register_architecture
from saescope.sae.site import sae_site, sae_site_out


def build_sae(cfg: SAEConfig, seed: int | None = None) -> SAE:
    """A freshly initialised SAE of ``cfg.architecture``: reproducible given ``seed``, leaving
    the global random state as it was; without a seed, drawn from (and advancing) it."""
    import torch

    if seed is None:
        return ARCHITECTURES[cfg.architecture](cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHITECTURES[cfg.architecture](cfg)


__all__ = [
    "ARCHITECTURES",
    "SAE",
    "Latents",
    "SAEConfig",
    "SAEMetadata",
    "SAEOutput",
    "build_sae",
    "load_sae",
    "register_architecture",
    "sae_site",
    "sae_site_out",
    "save_sae",
]
