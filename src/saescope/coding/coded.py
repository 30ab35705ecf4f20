"""An SAE whose codes come from a pursuit over its decoder (or its own encoder truncated):
every consumer of ``SAE.encode`` / ``decode`` takes it unchanged."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from saescope.coding.pursuit import pursuit
from saescope.coding.spec import EncoderSpec, parse_encoder
from saescope.sae.base import SAE, Latents

CHUNK = 4096
"""Rows coded at once: bounds the (rows, d_sae) inner products of one pursuit step."""


class CodedSAE(SAE):
    """``inner``'s dictionary (the same parameter objects) with codes made by ``spec``.

    gp / mp / omp: ``x_hat = pursuit(x - b_dec) @ W_dec + b_dec``, whatever the architecture;
    topk: ``inner.encode(x)`` keeping the ``k`` largest values of each row. Decoding is the
    inner SAE's. Not for training (the codes carry no gradient) nor for saving (save ``inner``).
    """

    architecture = "coded"
    saelens_name = "coded"
    description = "an SAE's dictionary coded by inference-time optimisation"

    def __init__(self, inner: SAE, spec: EncoderSpec) -> None:
        nn.Module.__init__(self)  # no fresh weights: the inner SAE's are shared below
        self.cfg = inner.cfg
        self.inner = inner
        self.spec = spec
        self.W_dec = inner.W_dec
        self.b_dec = inner.b_dec
        self.W_enc = inner.W_enc
        if hasattr(inner, "b_enc"):
            self.b_enc = inner.b_enc

    def pre_acts(self, x_c: Tensor) -> Tensor:
        return self.inner.pre_acts(x_c)

    def encode(self, x: Tensor) -> Latents:
        x = self.check(x.reshape(-1, x.shape[-1]))
        parts = [self._encode(chunk) for chunk in x.split(CHUNK)]
        return _concat(parts, (len(x), self.cfg.d_sae))

    @torch.no_grad()
    def _encode(self, x: Tensor) -> Latents:
        spec = self.spec
        if spec.kind == "topk":
            return truncate_topk(self.inner.encode(x), spec.k)
        select = torch.bfloat16 if spec.bf16 else None
        return pursuit(spec.kind, x - self.b_dec, self.W_dec, spec.k, spec.nonneg, select)


def with_encoder(sae: SAE, spec: EncoderSpec | str | None) -> SAE:
    """``sae`` coded by ``spec`` (text as ``--encoder`` spells it); None: ``sae`` itself."""
    if spec is None:
        return sae
    return CodedSAE(sae, parse_encoder(spec) if isinstance(spec, str) else spec)


def truncate_topk(latents: Latents, k: int) -> Latents:
    """The ``k`` largest values of each row of ``latents`` (all of a row with fewer)."""
    order = latents.values.argsort(descending=True, stable=True)
    order = order[latents.rows[order].argsort(stable=True)]  # by row, largest first within
    rows = latents.rows[order]
    starts = torch.searchsorted(rows, rows)  # (N,) first position of each entry's row
    rank = torch.arange(len(rows), device=rows.device) - starts
    keep = order[rank < k]
    return Latents(latents.values[keep], latents.indices[keep], latents.rows[keep], latents.shape)


def _concat(parts: list[Latents], shape: tuple[int, int]) -> Latents:
    if len(parts) == 1:
        return Latents(*parts[0][:3], shape)
    rows, start = [], 0
    for part in parts:
        rows.append(part.rows + start)
        start += part.shape[0]
    return Latents(
        torch.cat([p.values for p in parts]),
        torch.cat([p.indices for p in parts]),
        torch.cat(rows),
        shape,
    )
