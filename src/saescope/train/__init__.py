"""Training SAEs from an iterator of (B, d) activation batches."""

from saescope.train.config import DeadConfig, OptimConfig, SparsityConfig, TrainConfig, sae_seed
from saescope.train.fit import fit
from saescope.train.recipes import (
    RECIPES,
    StepContext,
    StepOutput,
    TrainingRecipe,
    recipe_for,
    register_recipe,
)
from saescope.train.trainer import SAETrainer, geometric_median

__all__ = [
    "RECIPES",
    "DeadConfig",
    "OptimConfig",
    "SAETrainer",
    "SparsityConfig",
    "StepContext",
    "StepOutput",
    "TrainConfig",
    "TrainingRecipe",
    "fit",
    "geometric_median",
    "recipe_for",
    "register_recipe",
    "sae_seed",
]
