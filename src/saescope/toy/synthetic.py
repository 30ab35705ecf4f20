"""Activations generated from a known dictionary, with the structure real ones have.

    x = sum_i a_i D_i + noise        D (n, d): unit rows; a_i >= 0, mostly 0

- **Firing frequencies** are Zipf-like: feature i (0-based, among the free ones) fires with
  probability proportional to (i + 1) ** -zipf_exponent, scaled so that the free features
  fire ``l0`` times per row on average (each capped at ``max_frequency``).
- **Magnitudes** are log-normal: a_i = exp(mu + sigma * N(0, 1)) when feature i fires.
- **Correlated features**: the free features come in groups of ``group_size``; within a group
  firing is driven by Gaussians with correlation ``correlation`` (a Gaussian copula), so each
  feature keeps its own frequency while its group fires together more often than chance.
- **Hierarchy**: ``n_parents`` parents each with ``children_per_parent`` children. A child fires
  on its own (frequency ``child_frequency``); a parent fires whenever any of its children does,
  and on its own with ``parent_frequency``. This is the setting where an SAE can absorb the
  parent into its children's latents (Chanin et al. 2024).
- **Noise**: isotropic Gaussian of standard deviation ``noise`` per dimension.

Features are laid out as [free features..., parents..., children (parent-major)...].
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import torch
from torch import Tensor

from saescope.errors import SaescopeError


class GroundTruth(Protocol):
    """What a recovery benchmark needs from its data: the true dictionary, the hierarchy, and a
    sampler of activations with the true coefficients that made them."""

    @property
    def dictionary(self) -> Tensor:
        """(n, d) unit rows: the true feature directions."""
        ...

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """(parent, child) feature indices of the hierarchy (empty if none)."""
        ...

    def sample(self, rows: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(rows, d) activations and (rows, n) coefficients (zero where a feature is off)."""
        ...


@dataclass(frozen=True)
class SyntheticConfig:
    """The generator's parameters (see the module docstring for what each means)."""

    d: int = 64
    """Activation width."""
    n_free: int = 256
    """Features outside the hierarchy (Zipf frequencies, correlated in groups)."""
    l0: float = 6.0
    """Mean number of free features firing per row (before the cap)."""
    zipf_exponent: float = 1.0
    max_frequency: float = 0.5
    group_size: int = 4
    correlation: float = 0.6
    """Correlation of the Gaussians that decide firing within a group (0: independent)."""
    n_parents: int = 8
    children_per_parent: int = 3
    parent_frequency: float = 0.01
    """How often a parent fires with none of its children."""
    child_frequency: float = 0.02
    magnitude_mu: float = 0.0
    magnitude_sigma: float = 0.4
    noise: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("d", "n_free", "group_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SaescopeError(f"synthetic {name} must be an integer >= 1, got {value!r}")
        for name in ("n_parents", "children_per_parent", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SaescopeError(f"synthetic {name} must be an integer >= 0, got {value!r}")
        probabilities = ("max_frequency", "parent_frequency", "child_frequency")
        for name in probabilities:
            if not 0 <= getattr(self, name) <= 1:
                raise SaescopeError(
                    f"synthetic {name} must be in [0, 1], got {getattr(self, name)!r}"
                )
        if not 0 <= self.correlation < 1:
            raise SaescopeError(
                f"synthetic correlation must be in [0, 1), got {self.correlation!r}"
            )
        for name in ("l0", "zipf_exponent", "magnitude_sigma", "noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SaescopeError(f"synthetic {name} must be a finite number >= 0, got {value!r}")
        if self.l0 > self.n_free * self.max_frequency:
            raise SaescopeError(
                f"synthetic l0={self.l0} cannot be reached by {self.n_free} free features firing "
                f"at most {self.max_frequency} of the time; lower l0 or raise n_free"
            )

    @property
    def n_children(self) -> int:
        return self.n_parents * self.children_per_parent

    @property
    def n_features(self) -> int:
        return self.n_free + self.n_parents + self.n_children


class SyntheticData:
    """The generator of ``SyntheticConfig``: a fixed random dictionary, seeded samples."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        D = torch.randn(cfg.n_features, cfg.d, generator=g)
        self._dictionary = D / D.norm(dim=1, keepdim=True)  # (n, d)

    @property
    def dictionary(self) -> Tensor:
        return self._dictionary

    @cached_property
    def free_frequencies(self) -> Tensor:
        """(n_free,) firing probabilities of the free features: Zipf, scaled to l0, capped."""
        cfg = self.cfg
        zipf = torch.arange(1, cfg.n_free + 1, dtype=torch.float64) ** -cfg.zipf_exponent
        p = zipf / zipf.sum() * cfg.l0
        for _ in range(50):  # the cap removes mass: give it back to the uncapped features
            capped = p >= cfg.max_frequency
            p = p.clamp(max=cfg.max_frequency)
            short = cfg.l0 - float(p.sum())
            if short < 1e-9 or capped.all():
                break
            p[~capped] *= 1 + short / float(p[~capped].sum())
        return p.clamp(max=cfg.max_frequency).float()

    @cached_property
    def frequencies(self) -> Tensor:
        """(n,) each feature's marginal firing probability, parents including their children."""
        cfg = self.cfg
        parent = (
            1 - (1 - cfg.parent_frequency) * (1 - cfg.child_frequency) ** cfg.children_per_parent
        )
        return torch.cat(
            [
                self.free_frequencies,
                torch.full((cfg.n_parents,), parent),
                torch.full((cfg.n_children,), cfg.child_frequency),
            ]
        )

    @cached_property
    def _free_thresholds(self) -> Tensor:
        return torch.special.ndtri(self.free_frequencies.double()).float()  # -inf where p = 0

    @property
    def parents(self) -> Tensor:
        """(n_parents,) feature indices of the parents."""
        return torch.arange(self.cfg.n_free, self.cfg.n_free + self.cfg.n_parents)

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        cfg, start = self.cfg, self.cfg.n_free + self.cfg.n_parents
        return tuple(
            (cfg.n_free + p, start + p * cfg.children_per_parent + c)
            for p in range(cfg.n_parents)
            for c in range(cfg.children_per_parent)
        )

    def sample(self, rows: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(rows, d) activations and (rows, n) the coefficients that made them."""
        cfg = self.cfg
        fires = torch.cat(
            [self._free_firing(rows, generator), self._tree_firing(rows, generator)], 1
        )
        magnitude = torch.exp(
            cfg.magnitude_mu + cfg.magnitude_sigma * torch.randn(fires.shape, generator=generator)
        )
        codes = magnitude * fires  # (rows, n)
        x = codes @ self.dictionary + cfg.noise * torch.randn(rows, cfg.d, generator=generator)
        return x, codes

    def batches(self, steps: int, batch_size: int, seed: int = 0) -> Iterator[Tensor]:
        """``steps`` batches (batch_size, d), the same for the same seed."""
        # Apart from the dictionary's generator (seeded cfg.seed) for any seed given here.
        g = torch.Generator().manual_seed(1_000_003 * (seed + 1) + self.cfg.seed)
        return (self.sample(batch_size, g)[0] for _ in range(steps))

    def _free_firing(self, rows: int, g: torch.Generator) -> Tensor:
        """(rows, n_free) bool through a Gaussian copula: z = sqrt(rho) u_group + sqrt(1-rho) e,
        feature i fires when Phi(z_i) < p_i (compared as z_i < Phi^-1(p_i), which is cheaper),
        so its marginal frequency is exactly p_i."""
        cfg = self.cfg
        groups = -(-cfg.n_free // cfg.group_size)
        shared = torch.randn(rows, groups, generator=g).repeat_interleave(cfg.group_size, 1)
        own = torch.randn(rows, cfg.n_free, generator=g)
        z = (
            math.sqrt(cfg.correlation) * shared[:, : cfg.n_free]
            + math.sqrt(1 - cfg.correlation) * own
        )
        return z < self._free_thresholds

    def _tree_firing(self, rows: int, g: torch.Generator) -> Tensor:
        """(rows, n_parents + n_children) bool: children on their own, parents when any child
        does or on their own."""
        cfg = self.cfg
        children = torch.rand(rows, cfg.n_children, generator=g) < cfg.child_frequency
        any_child = children.view(rows, cfg.n_parents, cfg.children_per_parent).any(-1)
        parents = (torch.rand(rows, cfg.n_parents, generator=g) < cfg.parent_frequency) | any_child
        return torch.cat([parents, children], 1)
