"""The ground-truth benchmark: every registered architecture trained on the same data with a
known dictionary, at matched L0, and scored on how well it recovers that dictionary.

Matched L0: architectures with a k (``needs_k``) get k = ``BenchConfig.l0``. The others set
their sparsity through a penalty, whose L0 is only known after training, so each trains at
every scale of ``penalty_scales`` (all the SparsityConfig penalties multiplied by it; each
architecture reads its own) in the same pass, and the table keeps the scale whose held-out L0
is closest to the target. Every row says its setting and the L0 it reached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae import ARCHITECTURES, SAE, SAEConfig, build_sae
from saescope.toy.recovery import (
    absorption,
    dead_fraction,
    fraction_recovered,
    fvu,
    mean_max_cosine,
)
from saescope.toy.synthetic import GroundTruth
from saescope.train import SAETrainer, SparsityConfig, TrainConfig, fit, sae_seed
from saescope.train.recipes import RECIPES


@dataclass(frozen=True)
class BenchConfig:
    """How every SAE of the benchmark trains and is scored."""

    d_sae: int = 512
    l0: int = 8
    """The target L0: k of the k-architectures, the L0 the penalty scale is chosen for."""
    steps: int = 1_500
    batch_size: int = 1_024
    architectures: tuple[str, ...] = ()
    """Registry keys to train (empty: every registered architecture with a training recipe)."""
    penalty_scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """Multipliers of the default SparsityConfig penalties tried for architectures without k."""
    eval_rows: int = 16_384
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("d_sae", "l0", "steps", "batch_size", "eval_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SaescopeError(f"bench {name} must be an integer >= 1, got {value!r}")
        if self.l0 > self.d_sae:
            raise SaescopeError(f"bench l0={self.l0} exceeds d_sae={self.d_sae}")
        unknown = [a for a in self.architectures if a not in ARCHITECTURES]
        if unknown:
            raise SaescopeError(
                f"unknown architectures {unknown}; registered: {', '.join(sorted(ARCHITECTURES))}"
            )
        if not self.penalty_scales or any(not s > 0 for s in self.penalty_scales):
            raise SaescopeError(f"penalty_scales must be numbers > 0, got {self.penalty_scales!r}")

    def names(self) -> list[str]:
        """The architectures this benchmark trains, in registry order."""
        chosen = self.architectures or tuple(a for a in ARCHITECTURES if a in RECIPES)
        return [a for a in ARCHITECTURES if a in chosen]


@dataclass(frozen=True)
class BenchRow:
    """One architecture's scores on held-out rows."""

    architecture: str
    setting: str
    """k, or the penalty scale chosen to match L0."""
    l0: float
    fvu: float
    mean_max_cosine: float
    recovered: float
    """Fraction of true features with a decoder row at cosine > 0.9."""
    dead: float
    """Fraction of latents that never fire on the held-out rows."""
    absorption: float
    """Ground-truth absorption rate on the hierarchy (nan without one)."""
    parent_missed: float
    parents_found: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _trainers(cfg: BenchConfig, d: int) -> list[tuple[str, str, SAETrainer]]:
    base = SparsityConfig()
    out = []
    for arch in cfg.names():
        needs_k = ARCHITECTURES[arch].needs_k
        scales = (None,) if needs_k else cfg.penalty_scales
        for scale in scales:
            name = f"{arch}-k{cfg.l0}" if scale is None else f"{arch}-x{scale:g}"
            sparsity = (
                base
                if scale is None
                else SparsityConfig(l1_coef=base.l1_coef * scale, l0_coef=base.l0_coef * scale)
            )
            tcfg = TrainConfig(
                tokens=cfg.steps * cfg.batch_size,
                batch_size=cfg.batch_size,
                seed=cfg.seed,
                init_rows=min(8_192, cfg.steps * cfg.batch_size),
                sparsity=sparsity,
                checkpoint_every=0,
                log_every=cfg.steps,
            )
            scfg = SAEConfig(d, cfg.d_sae, arch, k=cfg.l0 if needs_k else None)
            sae = build_sae(scfg, seed=sae_seed(cfg.seed, name))
            setting = f"k={cfg.l0}" if scale is None else f"penalty x{scale:g}"
            out.append((arch, setting, SAETrainer(sae, tcfg, name)))
    return out


def score(sae: SAE, x: Tensor, codes: Tensor, truth: GroundTruth) -> dict[str, float]:
    """The recovery metrics of ``sae`` on held-out rows ``x`` made from ``codes``."""
    with torch.no_grad():
        acts = sae.encode_dense(x)  # (B, d_sae)
        x_hat = acts @ sae.W_dec + sae.b_dec
    W, D = sae.W_dec.detach(), truth.dictionary
    nan = float("nan")
    ab = absorption(acts, W, codes, D, truth.pairs) if truth.pairs else None
    return {
        "l0": float((acts > 0).sum(1).float().mean()),
        "fvu": fvu(x, x_hat),
        "mean_max_cosine": mean_max_cosine(W, D),
        "recovered": fraction_recovered(W, D),
        "dead": dead_fraction(acts),
        "absorption": ab.rate if ab else nan,
        "parent_missed": ab.parent_missed if ab else nan,
        "parents_found": ab.parents_found if ab else nan,
    }


def run_bench(truth: GroundTruth, cfg: BenchConfig) -> list[BenchRow]:
    """Train every architecture of ``cfg`` on ``truth``'s samples in one pass; one row each."""
    d = truth.dictionary.shape[1]
    trainers = _trainers(cfg, d)
    g = torch.Generator().manual_seed(cfg.seed)
    batches = (truth.sample(cfg.batch_size, g)[0] for _ in range(cfg.steps))
    saes = fit([t for _, _, t in trainers], batches, None, progress=False)
    held_out = torch.Generator().manual_seed(cfg.seed + 1_000_003)  # rows never trained on
    x, codes = truth.sample(cfg.eval_rows, held_out)
    best: dict[str, BenchRow] = {}
    for (arch, setting, _), sae in zip(trainers, saes, strict=True):
        row = BenchRow(arch, setting, **score(sae, x, codes, truth))
        kept = best.get(arch)
        if kept is None or abs(row.l0 - cfg.l0) < abs(kept.l0 - cfg.l0):
            best[arch] = row
    return [best[a] for a in cfg.names()]
