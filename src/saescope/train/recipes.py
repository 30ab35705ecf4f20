"""How each architecture trains: one ``TrainingRecipe`` per name in ``saescope.sae.ARCHITECTURES``.

``sae/`` holds the modules and their facts and must not import training code, so the training
half of an architecture registers here under the same name. A new architecture is one file:

    @register_architecture
    class MySAE(SAE): ...
    register_recipe("mine", TrainingRecipe(my_objective, default_dead_method="ghost"))

The built-in recipes are registered next to their objectives in ``saescope.train.objectives``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, get_args

from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae.registry import ARCHITECTURES
from saescope.train.config import DeadMethod, TrainConfig

if TYPE_CHECKING:
    from saescope.sae import SAE


@dataclass(frozen=True)
class StepContext:
    """What an objective may know about the run besides the batch."""

    cfg: TrainConfig
    dead: Tensor
    """(d_sae,) bool: latents that have not fired within the dead window."""
    progress: float
    """Fraction of training done, in [0, 1)."""
    dead_method: str
    variance: float = 1.0
    """E||x - mean||^2 of the (normalised) initialisation sample: the fixed denominator that
    turns squared error into FVU units. Fixed, not per batch, so that the loss is a mean over
    rows and data-parallel ranks average to exactly the single-process gradient."""
    workspace: dict[str, Tensor] = field(default_factory=dict)
    """Buffers the trainer keeps from step to step (the (B, d_sae) pre-activations): writing
    into last step's memory spares the page faults of a fresh 100+ MB allocation."""


class StepOutput(NamedTuple):
    loss: Tensor
    """Scalar to backpropagate."""
    x_hat: Tensor
    """(B, d) reconstruction, detached."""
    counts: Tensor
    """(d_sae,) rows of the batch on which each latent fired."""
    metrics: dict[str, float]
    """fvu, l0 and the architecture's own terms."""


Objective = Callable[["SAE", Tensor, StepContext], StepOutput]
"""(SAE, normalised batch (B, d), context) -> loss and logs."""

_TRAINER_METHODS: tuple[DeadMethod, ...] = ("resample", "none")
"""Dead-latent methods the trainer carries out itself, whatever the objective."""


@dataclass(frozen=True)
class TrainingRecipe:
    """The training half of an architecture."""

    objective: Objective
    default_dead_method: DeadMethod
    """Used when ``DeadConfig.method`` is None."""
    objective_dead_methods: tuple[DeadMethod, ...] = ()
    """Dead-latent methods the objective itself implements (auxk, ghost); resample and none
    work for every architecture."""

    def __post_init__(self) -> None:
        known = get_args(DeadMethod)
        for method in (self.default_dead_method, *self.objective_dead_methods):
            if method not in known:
                raise SaescopeError(
                    f"unknown dead-latent method {method!r} in a TrainingRecipe; "
                    f"expected one of {', '.join(known)}"
                )
        if self.default_dead_method not in self.dead_methods:
            raise SaescopeError(
                f"default_dead_method={self.default_dead_method!r} is not one the recipe "
                f"supports ({', '.join(self.dead_methods)}); list it in objective_dead_methods"
            )

    @property
    def dead_methods(self) -> tuple[DeadMethod, ...]:
        """Every ``DeadConfig.method`` this architecture accepts."""
        return (*self.objective_dead_methods, *_TRAINER_METHODS)


RECIPES: dict[str, TrainingRecipe] = {}


def register_recipe(architecture: str, recipe: TrainingRecipe) -> TrainingRecipe:
    """Register how ``architecture`` (already in ``ARCHITECTURES``) trains; twice is an error."""
    if architecture not in ARCHITECTURES:
        raise SaescopeError(
            f"no SAE architecture {architecture!r} to attach a training recipe to (known: "
            f"{', '.join(sorted(ARCHITECTURES))}); register its SAE class first"
        )
    if architecture in RECIPES:
        raise SaescopeError(f"architecture {architecture!r} already has a training recipe")
    RECIPES[architecture] = recipe
    return recipe


def recipe_for(architecture: str) -> TrainingRecipe:
    """The recipe of a registered architecture, or an error naming the one that lacks it."""
    if architecture not in RECIPES:
        raise SaescopeError(
            f"architecture {architecture!r} has no training recipe; register one with "
            f"saescope.train.register_recipe({architecture!r}, TrainingRecipe(...)) in the "
            "file that defines its SAE class"
        )
    return RECIPES[architecture]


def missing_recipes() -> list[str]:
    """Registered architectures without a training recipe (empty when all can train)."""
    return sorted(set(ARCHITECTURES) - set(RECIPES))


# Importing the objectives registers the built-in recipes.
from saescope.train import objectives as _objectives  # noqa: E402, F401
