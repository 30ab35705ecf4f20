"""Adam that steps every parameter in memory order.

``W_enc`` is a (d_in, d_sae) parameter stored column-major (its transpose is contiguous: the
sparse kernels gather its columns and write its gradient latent by latent). torch's fused Adam
walks a non-contiguous tensor through copies: on W_enc at 2304 x 16384 a step takes 148 ms
instead of 20 ms on the 2-core CPU of benchmarks/README.md. So the optimizer is given, for such a
parameter, a contiguous transposed alias that shares its memory; the alias's gradient is the
parameter's gradient transposed (a view, no copy), and the moments live in the alias's layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn


def _alias(param: nn.Parameter) -> nn.Parameter:
    if param.dim() == 2 and not param.is_contiguous() and param.t().is_contiguous():
        return nn.Parameter(param.detach().t())
    return param


class Adam:
    """``torch.optim.Adam(fused=True)`` over memory-order aliases of ``params``."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float]):
        self.params = list(params)
        self.aliases = [_alias(p) for p in self.params]
        self.inner = torch.optim.Adam(self.aliases, lr=lr, betas=betas, fused=True)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    def zero_grad(self) -> None:
        for p, a in zip(self.params, self.aliases, strict=True):
            p.grad = a.grad = None

    def step(self) -> None:
        for p, a in zip(self.params, self.aliases, strict=True):
            if a is not p:
                a.grad = None if p.grad is None else p.grad.t().contiguous()  # a view if laid out
        self.inner.step()

    def moments(self, param: Tensor) -> Iterator[Tensor]:
        """``param``'s Adam moments (exp_avg, exp_avg_sq) oriented like ``param``."""
        alias = self.aliases[next(i for i, p in enumerate(self.params) if p is param)]
        state = self.inner.state.get(alias, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                yield state[key] if alias is param else state[key].t()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)
