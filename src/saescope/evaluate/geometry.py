"""Dictionary geometry from the weights alone: duplicate latents, encoder/decoder agreement, and
for SAEs on MLP neurons how many neurons each latent draws on (Towards Monosemanticity)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from saescope.sae import SAE


@dataclass(frozen=True)
class Geometry:
    max_decoder_cosine_mean: float
    """Mean over latents of the largest cosine with any other decoder row."""
    duplicate_fraction: float
    """Latents whose nearest other decoder row has cosine > 0.9."""
    encoder_decoder_cosine_mean: float
    """Mean cosine between each latent's encoder column and decoder row."""
    top1_neuron_share: float | None = None
    """mlp_act SAEs: mean fraction of a decoder row's squared norm in its largest neuron."""
    top10_neuron_share: float | None = None
    neuron_kurtosis_mean: float | None = None
    """mlp_act SAEs: mean kurtosis of decoder rows over neurons (high: few neurons)."""

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@torch.no_grad()
def max_cosines(W_dec: Tensor, chunk: int = 2048) -> Tensor:
    """(d_sae,) each decoder row's largest cosine with another row, in chunks of rows."""
    W = W_dec.float() / W_dec.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = torch.empty(len(W))
    for start in range(0, len(W), chunk):
        sims = W[start : start + chunk] @ W.t()  # (chunk, d_sae)
        idx = torch.arange(start, min(start + chunk, len(W)))
        sims[idx - start, idx] = -1.0
        out[start : start + chunk] = sims.max(dim=1).values
    return out


@torch.no_grad()
def geometry(sae: SAE, neuron_basis: bool = False) -> Geometry:
    """Geometry of ``sae``; ``neuron_basis`` for SAEs trained on ``mlp_act`` sites."""
    maxcos = max_cosines(sae.W_dec)
    enc = sae.W_enc.t().float()
    dec = sae.W_dec.float()
    # A transcoder whose sites differ in width has no encoder-decoder cosine to speak of.
    enc_dec = (
        torch.nn.functional.cosine_similarity(enc, dec, dim=1)
        if enc.shape == dec.shape
        else torch.tensor(float("nan"))
    )
    extra: dict[str, float] = {}
    if neuron_basis:
        energy = dec.pow(2)
        share = energy / energy.sum(1, keepdim=True).clamp_min(1e-12)
        top = share.sort(dim=1, descending=True).values
        centred = dec - dec.mean(1, keepdim=True)
        kurtosis = centred.pow(4).mean(1) / centred.pow(2).mean(1).pow(2).clamp_min(1e-24)
        extra = {
            "top1_neuron_share": float(top[:, 0].mean()),
            "top10_neuron_share": float(top[:, :10].sum(1).mean()),
            "neuron_kurtosis_mean": float(kurtosis.mean()),
        }
    return Geometry(
        float(maxcos.mean()), float((maxcos > 0.9).float().mean()), float(enc_dec.mean()), **extra
    )
