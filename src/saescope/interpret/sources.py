"""What a "feature" is to the index: an SAE's latents, or a site's raw units (MLP neurons).

Both turn a site's activations into sparse (values, indices, rows) triples and know where each
feature writes in the residual stream, which is all the index needs: the statistics come from the
first, the logit attribution and the neighbours from the second.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from saescope.coding import with_encoder
from saescope.errors import SaescopeError
from saescope.models import LanguageModel, Site
from saescope.models.families import mlp_down_weight
from saescope.sae import SAE, Latents, sae_site, sae_site_out
from saescope.sae.formats import source_dir, weights_file
from saescope.sae.io import load_sae


@dataclass
class FeatureSource:
    """Encodes a site's activations into features, and describes where those features write."""

    kind: str
    """``"sae"`` or ``"neurons"``."""
    site: str
    """The hook site whose activations ``encode`` reads (``layers.6.resid_post``)."""
    n_features: int
    d_in: int
    sae: SAE | None = None
    identity: str = ""
    """A checksum of the SAE's weights (or the site name for neurons): what the index was built
    from, checked when a build resumes."""
    path: str = ""
    site_out: str = ""
    """Where the features write: a transcoder's output site (its decoder rows live there);
    ``site`` for an SAE or neurons ("" is read as ``site``)."""

    def __post_init__(self) -> None:
        self.site_out = self.site_out or self.site

    @torch.inference_mode()
    def encode(self, x: Tensor) -> Latents:
        """Sparse features of ``x`` (N, d_in); only strictly positive values count as firing."""
        if x.shape[-1] != self.d_in:
            raise SaescopeError(
                f"the {self.kind} at {self.site} expects width {self.d_in}, activations have "
                f"{x.shape[-1]}; were they captured at another site or from another model?"
            )
        if self.sae is not None:
            lat = self.sae.encode(x.to(self.sae.W_enc.dtype))
        else:
            rows, indices = torch.nonzero(x > 0, as_tuple=True)
            lat = Latents(x[rows, indices], indices, rows, (len(x), self.d_in))
        fired = lat.values > 0
        if bool(fired.all()):
            return lat
        return Latents(lat.values[fired], lat.indices[fired], lat.rows[fired], lat.shape)

    def write_directions(self, model: LanguageModel) -> Tensor:
        """(n_features, d_model): what one unit of each feature adds to the residual stream.

        SAE decoder rows at a residual or block-output site are residual directions already; at an
        ``mlp_act`` site (SAE rows or raw neurons) they go through the MLP's down projection. A
        transcoder's rows are read at its output site (``site_out``), not the one it encodes.
        """
        site = Site.parse(self.site_out)
        rows = self.sae.W_dec.detach().float() if self.sae is not None else torch.eye(self.d_in)
        if site.kind != "mlp_act":
            return rows
        w_in_out = mlp_down_weight(model.family, model.layers[site.layer]).float()  # (d_mlp, d)
        return rows @ w_in_out.to(rows.device)

    def decoder_rows(self) -> Tensor:
        """(n_features, d): the vectors whose cosines make the neighbours (SAE decoder rows)."""
        if self.sae is None:
            raise SaescopeError("raw neurons have no decoder; use write_directions")
        return self.sae.W_dec.detach().float()


def sae_source(
    path: str | Path, site: str | None = None, encoder: str | None = None
) -> FeatureSource:
    """The latents of the SAE saved at ``path``; its site from its metadata unless given;
    coded by ``encoder`` (``gp:k=32``, ``saescope.coding``) instead of its encoder if given."""
    sae = with_encoder(load_sae(path), encoder)
    weights = weights_file(sae, path)  # the file read, whatever its format
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    return FeatureSource(
        kind="sae",
        site=Site.parse(site).name if site else sae_site(sae),
        site_out=sae_site_out(sae) if sae.cfg.is_transcoder else "",
        n_features=sae.cfg.d_sae,
        d_in=sae.cfg.d_in,
        sae=sae.eval(),
        identity=f"sha256:{digest}" + (f"+{encoder}" if encoder else ""),
        path=str(source_dir(sae, path)),
    )


def neuron_source(model: LanguageModel, site: str) -> FeatureSource:
    """The raw units of ``site`` (meant for ``mlp_act``: a neuron fires when positive)."""
    name = model.site(site).name
    width = model.site_dim(name)
    return FeatureSource(
        kind="neurons", site=name, n_features=width, d_in=width, identity=f"neurons:{name}"
    )
