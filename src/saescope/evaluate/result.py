"""``evaluate``: every metric of one SAE in one call, as an ``EvalResult``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from saescope.data import keep_positions
from saescope.evaluate.geometry import Geometry, geometry
from saescope.evaluate.reconstruction import Batch, ReconstructionStats, reconstruction_stats
from saescope.evaluate.splice import SplicedStats, spliced_stats
from saescope.models import LanguageModel, Site
from saescope.sae import SAE, sae_site, sae_site_out


@dataclass(frozen=True)
class EvalResult:
    name: str
    path: str
    architecture: str
    d_sae: int
    site: str | None
    reconstruction: ReconstructionStats
    geometry: Geometry
    spliced: SplicedStats | None = None
    without_outliers: ReconstructionStats | None = None
    """Reconstruction on the rows that are not outliers (``outliers``' threshold)."""
    outliers: dict[str, Any] | None = None
    """The outlier rule applied (mode, multiple, median norm, threshold) and rows it flagged."""
    site_out: str | None = None
    """A transcoder's output site (``site`` is its input); None for an SAE."""
    absorption: dict[str, Any] | None = None
    """First-letter absorption (``evaluate.absorption.absorption``), when asked for."""
    probing: dict[str, Any] | None = None
    """k-sparse probing per task (``evaluate.probing.sparse_probing``), when asked for."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "architecture": self.architecture,
            "d_sae": self.d_sae,
            "site": self.site,
            "site_out": self.site_out,
            "reconstruction": self.reconstruction.to_dict(),
            "without_outliers": (
                self.without_outliers.to_dict() if self.without_outliers else None
            ),
            "outliers": self.outliers,
            "spliced": self.spliced.to_dict() if self.spliced else None,
            "geometry": self.geometry.to_dict(),
            "absorption": self.absorption,
            "probing": self.probing,
            "log10_density": self.reconstruction.log10_density.tolist(),
        }


def special_policy(sae: SAE, exclude_special: bool | None) -> bool:
    """Whether special-token positions are left out when evaluating ``sae``: the caller's
    explicit choice, else the SAE's own ``metadata.exclude_special_tokens``."""
    return sae.cfg.metadata.exclude_special_tokens if exclude_special is None else exclude_special


def evaluate(
    sae: SAE,
    activations: Iterable[Batch],
    model: LanguageModel | None = None,
    token_batches: Iterable[Tensor] | None = None,
    name: str = "sae",
    path: str = "",
    ablations: bool = True,
    exclude_special: bool | None = None,
) -> EvalResult:
    """Reconstruction and latent statistics on ``activations`` (batches of (B, d_in); for a
    transcoder, pairs of input and output-site batches), the
    dictionary's geometry, and with ``model`` and ``token_batches`` ((B, T) token ids) the
    next-token losses with the SAE spliced in at its site.

    The spliced loss edits, and scores, the positions ``keep_positions`` keeps with
    ``exclude_special``; ``None`` (the default) takes it from the SAE's
    ``metadata.exclude_special_tokens``, the positions it was trained on. ``activations`` are
    taken as given: ``evaluate_saes`` draws them under the same choice.
    """
    site = sae_site(sae, path or None)
    site_out = sae_site_out(sae, path or None) if sae.cfg.is_transcoder else None
    stats = reconstruction_stats(sae, activations)
    spliced = None
    if model is not None and token_batches is not None:
        exclude = special_policy(sae, exclude_special)
        spliced = spliced_stats(
            model,
            sae,
            site,
            token_batches,
            lambda ids: keep_positions(ids, model.tokenizer, exclude),
            ablations=ablations,
            site_out=site_out,
        )
    shape = geometry(sae, neuron_basis=Site.parse(site).kind == "mlp_act")
    return EvalResult(
        name,
        path,
        sae.cfg.architecture,
        sae.cfg.d_sae,
        site,
        stats,
        shape,
        spliced,
        site_out=site_out,
    )
