"""Dead-latent bookkeeping and resampling."""

from __future__ import annotations

import torch
from torch import Tensor

from saescope.sae import SAE
from saescope.train.optim import Adam


class FiringTracker:
    """Tokens since each latent last fired; dead = not fired within ``window`` tokens."""

    def __init__(self, d_sae: int, window: int, device: torch.device | str = "cpu") -> None:
        self.window = window
        self.since = torch.zeros(d_sae, dtype=torch.long, device=device)
        self.counts = torch.zeros(d_sae, dtype=torch.long, device=device)
        self.tokens = 0

    def update(self, fired: Tensor, n_tokens: int, counts: Tensor | None = None) -> None:
        self.since += n_tokens
        self.since[fired] = 0
        self.tokens += n_tokens
        if counts is not None:
            self.counts += counts

    @property
    def dead(self) -> Tensor:
        return self.since >= self.window

    def state_dict(self) -> dict[str, Tensor | int]:
        return {"since": self.since, "counts": self.counts, "tokens": self.tokens}

    def load_state_dict(self, state: dict) -> None:
        self.since.copy_(state["since"])
        self.counts.copy_(state["counts"])
        self.tokens = int(state["tokens"])


@torch.no_grad()
def resample_dead_(
    sae: SAE,
    optimizer: Adam,
    dead: Tensor,
    x: Tensor,
    x_hat: Tensor,
    generator: torch.Generator,
) -> int:
    """Re-initialise dead latents towards badly reconstructed inputs (Anthropic, 2023).

    Each dead latent gets an input drawn with probability proportional to its squared error:
    its decoder row becomes that input's normalised residual, its encoder column the same
    direction scaled to 0.2 x the mean live encoder norm, its firing bias (``SAE.firing_bias``)
    0, and its Adam state is reset. Returns how many latents were resampled.
    """
    idx = dead.nonzero().squeeze(1)
    if len(idx) == 0:
        return 0
    err = (x - x_hat).pow(2).sum(-1)  # (B,)
    rows = torch.multinomial(err + 1e-12, len(idx), replacement=True, generator=generator)
    direction = x[rows] - x_hat[rows]
    direction /= direction.norm(dim=-1, keepdim=True).clamp_min(1e-8)  # (n_dead, d)
    alive = ~dead
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
    sae.W_dec[idx] = direction
    sae.W_enc[:, idx] = direction.t() * 0.2 * enc_norm
    bias = sae.get_parameter(type(sae).firing_bias)  # (d_sae,)
    bias[idx] = 0
    for param, dims in ((sae.W_dec, (idx,)), (sae.W_enc, (slice(None), idx)), (bias, (idx,))):
        for moment in optimizer.moments(param):
            moment[dims] = 0
    return len(idx)
