"""Training SAEs from an iterator of (B, d) activation batches."""

from saescope.train.config import DeadConfig, OptimConfig, SparsityConfig, TrainConfig
from saescope.train.fit import fit
from saescope.train.trainer import SAETrainer, geometric_median

__all__ = [
    "DeadConfig",
    "OptimConfig",
    "SAETrainer",
    "SparsityConfig",
    "TrainConfig",
    "fit",
    "geometric_median",
]
