"""The SAE module shared by every architecture: weights, sparse latents, encode / decode.

    x_c     = x - b_dec                      (only with apply_b_dec_to_input)
    pre     = x_c @ W_enc + b_enc            (B, d_sae)
    latents = act(pre)                       sparse: the architecture's activation
    x_hat   = latents @ W_dec + b_dec        (B, d_in)

Weights use SAELens names and orientation: W_enc (d_in, d_sae), W_dec (d_sae, d_in).

A transcoder (``cfg.d_out`` set) reads one site and predicts another (the MLP's input and
output, say): W_dec is (d_sae, d_out), b_dec (d_out,), b_dec is never subtracted from the
input, and with ``cfg.skip`` an affine skip W_skip (d_out, d_in) adds ``x @ W_skip.T``:

    y_hat   = latents @ W_dec + b_dec + x @ W_skip.T      (B, d_out)

An architecture is a subclass plus ``register_architecture``: its class attributes
(``architecture``, ``saelens_name``, ``description``, ``needs_k`` and the training constraints
below) are its registry entry. How it trains is a ``TrainingRecipe`` registered under the same
name in ``saescope.train`` (``sae/`` knows nothing about training).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from saescope.errors import SaescopeError
from saescope.sae.config import SAEConfig
from saescope.sae.kernels import sparse_decode


class Latents(NamedTuple):
    """Active latents of a batch as COO triples, sorted by row."""

    values: Tensor
    """(N,) activation of each active latent."""
    indices: Tensor
    """(N,) latent index of each."""
    rows: Tensor
    """(N,) batch row of each."""
    shape: tuple[int, int]
    """(B, d_sae) of the dense equivalent."""

    def to_dense(self) -> Tensor:
        dense = torch.zeros(self.shape, dtype=self.values.dtype, device=self.values.device)
        return dense.index_put_((self.rows, self.indices), self.values)

    def l0(self) -> Tensor:
        """(B,) number of non-zero latents per row."""
        counts = torch.zeros(self.shape[0], device=self.values.device)
        return counts.index_add_(0, self.rows, (self.values != 0).float())


def coo_from_dense(z: Tensor) -> Latents:
    """Latents of a dense (B, d_sae) code; gradients flow through ``z``."""
    rows, indices = z.nonzero(as_tuple=True)
    return Latents(z[rows, indices], indices, rows, (z.shape[0], z.shape[1]))


class SAEOutput(NamedTuple):
    x_hat: Tensor
    """(..., d_in) reconstruction; a transcoder's (..., d_out) prediction of its output site."""
    latents: Latents
    """The sparse code that produced it."""


class SAE(nn.Module):
    """Base class; subclasses set the class attributes below and implement ``activation``
    (or ``select``, or ``encode``)."""

    architecture: ClassVar[str]
    """The registry key, saved as ``saescope_architecture`` in cfg.json."""
    saelens_name: ClassVar[str]
    """The architecture name SAELens v6 uses in cfg.json."""
    description: ClassVar[str]
    """One line for help texts: the activation and its paper."""
    needs_k: ClassVar[bool] = False
    """``SAEConfig.k`` is required (0 < k <= d_sae)."""
    has_b_enc: ClassVar[bool] = True
    """The base class creates ``b_enc``; False for architectures with their own encoder biases."""
    firing_bias: ClassVar[str] = "b_enc"
    """The bias that decides whether a latent fires (resampling zeroes it)."""
    constrain_decoder_norm: ClassVar[bool] = True
    """``TrainConfig.decoder_norm`` applies; False where the loss itself weighs the decoder
    norms (relu's L1 penalty), which a norm constraint would defeat."""
    uses_prefixes: ClassVar[bool] = False
    """``SAEConfig.matryoshka_widths`` applies (nested prefixes trained to reconstruct)."""
    nonnegative_threshold: ClassVar[bool] = False
    """A learned ``threshold`` parameter the trainer clamps at >= 0 after each step."""

    W_enc: nn.Parameter
    W_dec: nn.Parameter
    b_enc: nn.Parameter
    b_dec: nn.Parameter
    W_skip: nn.Parameter

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dtype = getattr(torch, cfg.dtype)
        d, n, o = cfg.d_in, cfg.d_sae, cfg.out_dim
        W_dec = torch.randn(n, o, dtype=dtype)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)  # (d_sae, d_out), rows at unit norm
        # (d_in, d_sae), tied at init where the widths agree. Stored column-major: W_enc.t() is
        # then contiguous, which the sparse kernels gather rows from, and their (d_sae, d_in)
        # gradients need no transpose.
        if o == d:
            W_enc_t = W_dec.clone()
        else:
            W_enc_t = torch.randn(n, d, dtype=dtype)
            W_enc_t /= W_enc_t.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(W_enc_t.t())
        if self.has_b_enc:
            self.b_enc = nn.Parameter(torch.zeros(n, dtype=dtype))
        # b_dec after b_enc, subclasses' own parameters after b_dec: the optimizer state in
        # checkpoints is keyed by parameter position, so this order is part of the format.
        self.b_dec = nn.Parameter(torch.zeros(o, dtype=dtype))
        if cfg.skip:
            self.W_skip = nn.Parameter(torch.zeros(o, d, dtype=dtype))  # (d_out, d_in)

    # -- the pieces ------------------------------------------------------------------------------

    def check(self, x: Tensor) -> Tensor:
        """``x`` in the SAE's dtype, after checking its width."""
        if x.shape[-1] != self.cfg.d_in:
            raise SaescopeError(
                f"SAE expects d_in={self.cfg.d_in}, activations have {x.shape[-1]}; "
                "was it trained on another site or model?"
            )
        return x.to(self.W_enc.dtype)

    def center(self, x: Tensor) -> Tensor:
        x = self.check(x)
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    def pre_acts(self, x_c: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x_c, self.W_enc)  # (B, d_sae)

    def activation(self, pre: Tensor) -> Tensor:
        """Dense latents (B, d_sae) from pre-activations: the architecture's nonlinearity, the
        one formula that inference and training objectives both call."""
        raise NotImplementedError(f"{type(self).__name__} defines no activation")

    def select(self, x_c: Tensor) -> Latents:
        """The active latents for centred inputs ``x_c`` (B, d_in)."""
        return coo_from_dense(self.activation(self.pre_acts(x_c)))

    # -- public API ------------------------------------------------------------------------------

    def encode(self, x: Tensor) -> Latents:
        """Sparse latents of ``x`` (..., d_in) flattened to rows."""
        return self.select(self.center(x.reshape(-1, x.shape[-1])))

    def encode_dense(self, x: Tensor) -> Tensor:
        """Dense latents (..., d_sae)."""
        return self.encode(x).to_dense().reshape(*x.shape[:-1], self.cfg.d_sae)

    def decode(self, latents: Latents) -> Tensor:
        """Reconstruction (B, d_out) from sparse latents; a transcoder's skip term is not in it
        (it needs the input: see ``skip_term`` and ``forward``)."""
        B = latents.shape[0]
        return (
            sparse_decode(latents.rows, latents.indices, latents.values, self.W_dec, B) + self.b_dec
        )

    def skip_term(self, x: Tensor) -> Tensor | None:
        """``x @ W_skip.T`` (..., d_out) for a transcoder with a skip connection, else None."""
        if not self.cfg.skip:
            return None
        return self.check(x) @ self.W_skip.t()

    def forward(self, x: Tensor) -> SAEOutput:
        """``x`` (..., d_in) -> the output (..., d_out: d_in for an SAE, which reconstructs
        ``x``) and the latents (rows flattened)."""
        latents = self.encode(x)
        out = self.decode(latents).reshape(*x.shape[:-1], self.cfg.out_dim)
        skip = self.skip_term(x)
        return SAEOutput(out if skip is None else out + skip, latents)

    # -- weight surgery --------------------------------------------------------------------------

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm_(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        """Make an SAE trained on ``x * scale`` work on raw ``x`` with identical latents."""
        if self.cfg.is_transcoder:
            raise SaescopeError(
                "fold_input_scale_ rescales an SAE's input and output together; a transcoder's "
                "input and output sites have their own scales: fold them into W_enc / W_skip "
                "and W_dec / b_dec separately"
            )
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)
