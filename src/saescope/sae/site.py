"""The hook sites an SAE reads (and a transcoder writes), from its saved metadata."""

from __future__ import annotations

from pathlib import Path

from saescope._sites import Site
from saescope.errors import SaescopeError
from saescope.sae.base import SAE


def sae_site(sae: SAE, source: str | Path | None = None) -> str:
    """The site an SAE was trained on (a transcoder's input site), from its metadata (either
    spelling), as ``layers.i.kind``.

    ``source``, the SAE's directory where known, is named in the error.
    """
    meta = sae.cfg.metadata
    return _parse(meta.site or meta.hook_name, "site", "hook_name", sae, source)


def sae_site_out(sae: SAE, source: str | Path | None = None) -> str:
    """The site an SAE's output belongs at: a transcoder's output site (``metadata.site_out``
    or ``hook_name_out``), an SAE's own site (it reconstructs its input)."""
    if not sae.cfg.is_transcoder:
        return sae_site(sae, source)
    meta = sae.cfg.metadata
    return _parse(meta.site_out or meta.hook_name_out, "site_out", "hook_name_out", sae, source)


def _parse(name: str | None, ours: str, saelens: str, sae: SAE, source: str | Path | None) -> str:
    prov = sae.cfg.metadata.extra.get("provenance")
    if isinstance(prov, dict) and prov.get("format") != "saelens":  # read from another format
        where = f"{prov.get('path')} ({prov.get('format')}): "
    else:
        where = f"{Path(source) / 'cfg.json'}: " if source else "the SAE's cfg.json: "
    if name is None:
        raise SaescopeError(
            f"{where}metadata names no site (metadata.{ours} or metadata.{saelens}); "
            "pass the site explicitly or add it to cfg.json"
        )
    try:
        return Site.parse(name).name
    except SaescopeError as err:
        raise SaescopeError(f"{where}metadata {ours} {name!r}: {err}") from err
