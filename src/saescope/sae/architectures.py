"""The architectures: TopK, BatchTopK, Matryoshka BatchTopK, JumpReLU, ReLU (L1) and Gated.

Each differs only in how it picks active latents from the pre-activations, written once here
and called by both inference and the training objectives (``saescope.train.objectives``, which
add only losses and straight-through gradients).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from saescope.sae.base import SAE, Latents, coo_from_dense
from saescope.sae.config import SAEConfig
from saescope.sae.kernels import batch_topk_coo, sparse_encode, topk_coo
from saescope.sae.registry import register_architecture

__all__ = [
    "BatchTopKSAE",
    "GatedSAE",
    "JumpReLUSAE",
    "MatryoshkaSAE",
    "ReLUSAE",
    "TopKSAE",
    "coo_from_dense",
]


@register_architecture
class TopKSAE(SAE):
    """latents = ReLU(TopK_k(pre)): exactly k candidates per row (Gao et al. 2024)."""

    architecture = "topk"
    saelens_name = "topk"
    description = "ReLU of the k largest pre-activations per row (Gao et al. 2024)"
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
    description = (
        "the B*k largest pre-activations of a batch while training, a learned global "
        "threshold at inference (Bussmann et al. 2024)"
    )
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
class MatryoshkaSAE(BatchTopKSAE):
    """BatchTopK whose nested prefixes of the dictionary (latents ``[0, w)`` for each ``w`` in
    ``SAEConfig.prefix_widths``) are each trained to reconstruct the input on their own
    (Bussmann et al. 2025; Nabeshima 2024), so early latents learn general features and later
    ones refine them instead of absorbing them. Inference is BatchTopK's: the learned global
    threshold, saved for SAELens as JumpReLU (as SAELens saves its Matryoshka BatchTopK)."""

    architecture = "matryoshka"
    description = (
        "BatchTopK whose nested dictionary prefixes each reconstruct the input "
        "(Bussmann et al. 2025)"
    )
    uses_prefixes = True


@register_architecture
class JumpReLUSAE(SAE):
    """latents = ReLU(pre) * H(pre - threshold), a threshold per latent
    (Rajamanoharan et al. 2024)."""

    architecture = "jumprelu"
    saelens_name = "jumprelu"
    description = "per-latent learned thresholds, L0 penalty (Rajamanoharan et al. 2024)"
    # The formula below holds for any threshold; clamping keeps the straight-through estimator's
    # jump size (relu(t)) from vanishing once a threshold goes negative.
    nonnegative_threshold = True

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        # Linear, not exp(log_threshold): under Adam a log parameterisation moves thresholds
        # by tiny steps once they are small, and L0 stops going down.
        self.threshold = nn.Parameter(torch.full((cfg.d_sae,), 1e-3, dtype=self.W_enc.dtype))

    @staticmethod
    def fires(pre: Tensor, threshold: Tensor) -> Tensor:
        """(B, d_sae) bool: pre > max(threshold, 0), where ReLU(pre) * H(pre - t) is non-zero."""
        return pre > threshold.clamp(min=0)

    @classmethod
    def jump(cls, pre: Tensor, threshold: Tensor) -> Tensor:
        """ReLU(pre) * H(pre - threshold) (B, d_sae): the formula of inference and of the
        training forward, which passes its own threshold to get straight-through gradients."""
        return pre * cls.fires(pre, threshold)

    def activation(self, pre: Tensor) -> Tensor:
        return self.jump(pre, self.threshold)


@register_architecture
class ReLUSAE(SAE):
    """latents = ReLU(pre), trained with an L1 penalty weighted by decoder norms
    (Anthropic, April 2024 update)."""

    architecture = "relu"
    saelens_name = "standard"
    description = "ReLU with an L1 penalty weighted by decoder norms (Anthropic, April 2024)"
    constrain_decoder_norm = False  # the L1 penalty is weighted by the decoder norms instead

    def activation(self, pre: Tensor) -> Tensor:
        return pre.relu()


@register_architecture
class GatedSAE(SAE):
    """A gate decides which latents fire, a magnitude path how much (Rajamanoharan et al. 2024):
    latents = H(x_c W_enc + b_gate) * ReLU(x_c (W_enc * exp(r_mag)) + b_mag)."""

    architecture = "gated"
    saelens_name = "gated"
    description = (
        "a gate path picks the latents, a magnitude path sizes them (Rajamanoharan et al. 2024)"
    )
    has_b_enc = False  # b_gate plays its part; the SAELens keys are b_gate, r_mag, b_mag
    firing_bias = "b_gate"

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
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

    @staticmethod
    def combine(pre_gate: Tensor, pre_mag: Tensor) -> Tensor:
        """Dense latents (B, d_sae) from the two paths."""
        return (pre_gate > 0) * pre_mag.relu()

    def select(self, x_c: Tensor) -> Latents:
        return coo_from_dense(self.combine(*self.gate_and_magnitude(x_c)))
