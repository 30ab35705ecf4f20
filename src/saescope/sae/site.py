"""The hook site an SAE reads, from its saved metadata."""

from __future__ import annotations

from saescope._sites import Site
from saescope.errors import SaescopeError
from saescope.sae.base import SAE


def sae_site(sae: SAE) -> str:
    """The site an SAE was trained on, from its metadata (either spelling), as ``layers.i.kind``."""
    meta = sae.cfg.metadata
    name = meta.site or meta.hook_name
    if name is None:
        raise SaescopeError(
            "the SAE's cfg.json names no site (metadata.site or metadata.hook_name); "
            "pass the site explicitly or add it to cfg.json"
        )
    return Site.parse(name).name
