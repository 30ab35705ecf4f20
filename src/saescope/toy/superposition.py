"""Toy models of superposition (Elhage et al. 2022): n sparse features squeezed into m dims.

    h  = W x                    (m,)  W is (m, n); feature i's direction is the column W_i
    x' = ReLU(W^T h + b)        (n,)  the ReLU-output model ("linear": no ReLU)
    loss = E sum_i I_i (x_i - x'_i)^2,   I_i = decay^i

Each feature is 0 with probability S (the sparsity) and uniform on [0, 1] otherwise. Dense
features (S = 0) get the m most important features a dimension each and drop the rest; as S
grows the ReLU model packs more features than dimensions (antipodal pairs, then pentagons and
other polytopes), the linear model never does. Many sparsities train at once as independent
instances of one batched model, with a private generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
from torch import Tensor

from saescope.errors import SaescopeError

Kind = Literal["relu", "linear"]


@dataclass(frozen=True)
class ToyConfig:
    """One toy model (or, through ``train_toys``, one per sparsity)."""

    n_features: int = 20
    d_hidden: int = 5
    importance_decay: float = 0.7
    """I_i = importance_decay ** i: feature 0 matters most."""
    sparsity: float = 0.0
    """S: the probability that a feature is zero in a sample."""
    kind: Kind = "relu"
    """relu: x' = ReLU(W^T W x + b); linear: x' = W^T W x + b."""
    steps: int = 3_000
    batch_size: int = 1_024
    lr: float = 1e-2
    """Adam's rate, decayed linearly to 0 over the last fifth of the steps."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_features", "d_hidden", "steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SaescopeError(f"toy {name} must be an integer >= 1, got {value!r}")
        if not 0 < self.importance_decay <= 1:
            raise SaescopeError(
                f"toy importance_decay must be in (0, 1], got {self.importance_decay!r}"
            )
        if not 0 <= self.sparsity < 1:
            raise SaescopeError(
                f"toy sparsity S must be in [0, 1) (1 would be all zeros), got {self.sparsity!r}"
            )
        if self.kind not in get_args(Kind):
            raise SaescopeError(f"toy kind must be one of {get_args(Kind)}, got {self.kind!r}")
        if not self.lr > 0:
            raise SaescopeError(f"toy lr must be > 0, got {self.lr!r}")

    @property
    def importance(self) -> Tensor:
        """(n,) I_i = decay ** i."""
        return self.importance_decay ** torch.arange(self.n_features, dtype=torch.float32)


@dataclass(frozen=True)
class ToyModel:
    """A trained toy model: its config, W (m, n), b (n,) and the final training loss."""

    cfg: ToyConfig
    W: Tensor
    """(m, n): column i is feature i's direction in the hidden space."""
    b: Tensor
    """(n,) output bias."""
    loss: float

    def hidden(self, x: Tensor) -> Tensor:
        """(B, m) hidden activations of features (B, n)."""
        return x @ self.W.T

    def forward(self, x: Tensor) -> Tensor:
        """(B, n) reconstruction of features (B, n)."""
        out = self.hidden(x) @ self.W + self.b
        return out.relu() if self.cfg.kind == "relu" else out

    def geometry(self) -> Geometry:
        return geometry(self.W)


def sample_features(cfg: ToyConfig, rows: int, generator: torch.Generator) -> Tensor:
    """(rows, n): each entry uniform on [0, 1], zeroed with probability ``cfg.sparsity``."""
    return _sample(torch.full((1,), cfg.sparsity), rows, cfg.n_features, generator)[0]


def _sample(sparsity: Tensor, rows: int, n: int, generator: torch.Generator) -> Tensor:
    """(I, rows, n) features for instances with sparsities (I,)."""
    shape = (len(sparsity), rows, n)
    values = torch.rand(shape, generator=generator)
    keep = torch.rand(shape, generator=generator) >= sparsity[:, None, None]
    return values * keep


def train_toys(cfg: ToyConfig, sparsities: Sequence[float]) -> list[ToyModel]:
    """One model of ``cfg`` per sparsity, trained together (independent instances, one Adam).

    Reproducible from ``cfg.seed``; the global random state is left alone.
    """
    if not sparsities:
        raise SaescopeError("train_toys needs at least one sparsity")
    cfgs = [replace(cfg, sparsity=float(s)) for s in sparsities]  # validates each S
    g = torch.Generator().manual_seed(cfg.seed)
    n, m, count = cfg.n_features, cfg.d_hidden, len(cfgs)
    S = torch.tensor([c.sparsity for c in cfgs])  # (I,)
    # Xavier-normal init as in the paper's notebook: std sqrt(2 / (m + n)).
    W = (torch.randn(count, m, n, generator=g) * (2 / (m + n)) ** 0.5).requires_grad_()
    b = torch.zeros(count, 1, n, requires_grad=True)
    importance = cfg.importance  # (n,)
    opt = torch.optim.AdamW([W, b], lr=cfg.lr, weight_decay=0.0)
    losses = torch.zeros(count)
    decay_from = int(0.8 * cfg.steps)
    for step in range(cfg.steps):
        if step >= decay_from:  # a settled end: the sparse instances' rare gradients are noisy
            opt.param_groups[0]["lr"] = cfg.lr * (cfg.steps - step) / (cfg.steps - decay_from)
        x = _sample(S, cfg.batch_size, n, g)  # (I, B, n)
        out = torch.bmm(torch.bmm(x, W.transpose(1, 2)), W) + b  # (I, B, n)
        if cfg.kind == "relu":
            out = out.relu()
        per_instance = (importance * (x - out).pow(2)).sum(-1).mean(-1)  # (I,)
        opt.zero_grad()
        per_instance.sum().backward()  # instances share no weights: one backward trains each
        opt.step()
        losses = per_instance.detach()
    return [
        ToyModel(c, W[i].detach().clone(), b[i, 0].detach().clone(), float(losses[i]))
        for i, c in enumerate(cfgs)
    ]


def train_toy(cfg: ToyConfig) -> ToyModel:
    """One toy model at ``cfg.sparsity``."""
    return train_toys(cfg, [cfg.sparsity])[0]


@dataclass(frozen=True)
class Geometry:
    """Per-feature geometry of W (m, n), as plotted in the paper."""

    norms: Tensor
    """(n,) ||W_i||: ~1 for a represented feature, ~0 for a dropped one."""
    superposition: Tensor
    """(n,) sum_{j != i} (Ŵ_i · W_j)^2: how much the other features share feature i's direction
    (0: a dimension of its own; the paper's colour for the norm bars)."""
    dimensionality: Tensor
    """(n,) D_i = ||W_i||^2 / sum_j (Ŵ_i · W_j)^2: the fraction of a dimension feature i gets
    (1 alone, 1/2 in an antipodal pair, 2/5 in a pentagon, 0 dropped)."""
    dimensions_per_feature: float
    """m / ||W||_F^2: the hidden dims spent per feature learned (1/n_represented when they are
    orthogonal; below 1 means superposition)."""

    def represented(self, min_norm: float = 0.5) -> Tensor:
        """(n,) bool: features whose direction has norm above ``min_norm``."""
        return self.norms > min_norm


def geometry(W: Tensor) -> Geometry:
    """The geometry of a (m, n) weight matrix whose columns are the features' directions."""
    norms = W.norm(dim=0)  # (n,)
    unit = W / norms.clamp_min(1e-8)  # (m, n)
    overlaps = (unit.T @ W).pow(2)  # (n, n): (Ŵ_i · W_j)^2
    total = overlaps.sum(1)  # (n,) includes j = i, which is ||W_i||^2
    others = total - norms.pow(2)
    dim = torch.where(total > 1e-12, norms.pow(2) / total.clamp_min(1e-12), 0.0)
    frob = float(W.pow(2).sum())
    return Geometry(norms, others.clamp_min(0), dim, W.shape[0] / frob if frob else float("inf"))


@dataclass(frozen=True)
class ToyHidden:
    """A toy model's hidden activations as ground truth for an SAE: the represented features'
    directions are the dictionary (the ``GroundTruth`` protocol of ``saescope.toy.synthetic``)."""

    model: ToyModel
    min_norm: float = 0.5

    @property
    def features(self) -> Tensor:
        """(n_rep,) indices of the represented features."""
        return self.model.geometry().represented(self.min_norm).nonzero().squeeze(1)

    @property
    def dictionary(self) -> Tensor:
        """(n_rep, m) unit directions of the represented features."""
        W = self.model.W[:, self.features]
        return (W / W.norm(dim=0)).T

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        return ()  # the toy model has no hierarchy

    def sample(self, rows: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(rows, m) hidden activations and (rows, n_rep) the represented features' values,
        scaled by their norms (the coefficient of each unit dictionary row)."""
        x = sample_features(self.model.cfg, rows, generator)  # (rows, n)
        idx = self.features
        return self.model.hidden(x), x[:, idx] * self.model.W[:, idx].norm(dim=0)
