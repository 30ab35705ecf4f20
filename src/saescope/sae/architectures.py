"""The architectures: TopK, BatchTopK, JumpReLU, ReLU (L1) and Gated.

Each differs only in how it picks active latents from the pre-activations; training objectives
(losses, straight-through estimators) live in ``saescope.train.objectives``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from saescope.sae.base import SAE, Latents
from saescope.sae.config import SAEConfig
from saescope.sae.kernels import batch_topk_coo, sparse_encode, topk_coo
from saescope.sae.registry import register_architecture


def coo_from_dense(z: Tensor) -> Latents:
    """Latents of a dense (B, d_sae) code; gradients flow through ``z``."""
    rows, indices = z.nonzero(as_tuple=True)
    return Latents(z[rows, indices], indices, rows, (z.shape[0], z.shape[1]))


@register_architecture
class TopKSAE(SAE):
    """latents = ReLU(TopK_k(pre)): exactly k candidates per row (Gao et al. 2024)."""

    architecture = "topk"
    saelens_name = "topk"
    needs_k = True

    def encode(self, x: Tensor) -> Latents:
        x = self.check(x.reshape(-1, x.shape[-1]))
        with torch.no_grad():  # the dense pass only chooses; gradients go through sparse_encode
            pre = self.pre_acts(self.center(x))
        return self.select_from(pre, x)

    def choose(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """(rows, indices) of the candidates among pre-activations (B, d_sae)."""
        assert self.cfg.k is not None
        return topk_coo(pre, self.cfg.k)

    def select_from(self, pre: Tensor, x: Tensor) -> Latents:
        """Latents chosen among ``pre`` (computed without autograd from the uncentred ``x``)."""
        rows, indices = self.choose(pre)
        values = self.gather(pre, x, rows, indices).relu()
        return Latents(values, indices, rows, (pre.shape[0], pre.shape[1]))

    def gather(self, pre: Tensor, x: Tensor, rows: Tensor, indices: Tensor) -> Tensor:
        """Pre-activations at (rows, indices), differentiable, touching only those entries."""
        b_dec = self.b_dec if self.cfg.apply_b_dec_to_input else None
        return sparse_encode(pre, x, self.W_enc, self.b_enc, rows, indices, b_dec)


@register_architecture
class BatchTopKSAE(TopKSAE):
    """TopK over the whole batch (B * k latents, any number per row) while training; at
    inference a learned global threshold on the pre-activations (Bussmann et al. 2024)."""

    architecture = "batchtopk"
    saelens_name = "jumprelu"  # SAELens exports BatchTopK for inference as JumpReLU, so do we
    threshold: Tensor

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.d_sae, dtype=self.W_enc.dtype))

    def choose(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        assert self.cfg.k is not None
        if self.training:
            return batch_topk_coo(pre, self.cfg.k)
        rows, indices = (pre > self.threshold).nonzero(as_tuple=True)
        return rows, indices


@register_architecture
class JumpReLUSAE(SAE):
    """latents = pre * H(pre - threshold), a threshold per latent (Rajamanoharan et al. 2024)."""

    architecture = "jumprelu"
    saelens_name = "jumprelu"

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        # Linear, not exp(log_threshold): under Adam a log parameterisation moves thresholds
        # by tiny steps once they are small, and L0 stops going down.
        self.threshold = nn.Parameter(torch.full((cfg.d_sae,), 1e-3, dtype=self.W_enc.dtype))

    def select(self, x_c: Tensor) -> Latents:
        pre = self.pre_acts(x_c)
        return coo_from_dense(pre.relu() * (pre > self.threshold))


@register_architecture
class ReLUSAE(SAE):
    """latents = ReLU(pre), trained with an L1 penalty weighted by decoder norms
    (Anthropic, April 2024 update)."""

    architecture = "relu"
    saelens_name = "standard"

    def select(self, x_c: Tensor) -> Latents:
        return coo_from_dense(self.pre_acts(x_c).relu())


@register_architecture
class GatedSAE(SAE):
    """A gate decides which latents fire, a magnitude path how much (Rajamanoharan et al. 2024):
    latents = H(x_c W_enc + b_gate) * ReLU(x_c (W_enc * exp(r_mag)) + b_mag)."""

    architecture = "gated"
    saelens_name = "gated"

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        del self.b_enc
        dtype = self.W_enc.dtype
        self.b_gate = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))
        self.r_mag = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))
        self.b_mag = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))

    def gate_and_magnitude(self, x_c: Tensor) -> tuple[Tensor, Tensor]:
        pre_gate = x_c @ self.W_enc + self.b_gate  # (B, d_sae)
        pre_mag = x_c @ (self.W_enc * self.r_mag.exp()) + self.b_mag  # (B, d_sae)
        return pre_gate, pre_mag

    def pre_acts(self, x_c: Tensor) -> Tensor:
        return self.gate_and_magnitude(x_c)[0]

    def select(self, x_c: Tensor) -> Latents:
        pre_gate, pre_mag = self.gate_and_magnitude(x_c)
        return coo_from_dense((pre_gate > 0) * pre_mag.relu())
