"""The hook site an SAE reads, from its saved metadata."""

from __future__ import annotations

from pathlib import Path

from saescope._sites import Site
from saescope.errors import SaescopeError
from saescope.sae.base import SAE


def sae_site(sae: SAE, source: str | Path | None = None) -> str:
    """The site an SAE was trained on, from its metadata (either spelling), as ``layers.i.kind``.

    ``source``, the SAE's directory where known, is named in the error.
    """
    meta = sae.cfg.metadata
    name = meta.site or meta.hook_name
    prov = meta.extra.get("provenance")
    if isinstance(prov, dict) and prov.get("format") != "saelens":  # read from another format
        where = f"{prov.get('path')} ({prov.get('format')}): "
    else:
        where = f"{Path(source) / 'cfg.json'}: " if source else "the SAE's cfg.json: "
    if name is None:
        raise SaescopeError(
            f"{where}metadata names no site (metadata.site or metadata.hook_name); "
            "pass the site explicitly or add it to cfg.json"
        )
    try:
        return Site.parse(name).name
    except SaescopeError as err:
        raise SaescopeError(f"{where}metadata site {name!r}: {err}") from err
