"""Interventions during the forward pass and generation: SAE features, raw units and directions
(clamp, add, scale, ablate), steering vectors, and measuring what steering does."""

# The names load on first use (PEP 562): the CLI reads OPS to build its parser, and importing
# the rest would pull in transformers (about a second) for every command. No module is named
# like a name it exports (hence comparison.py): importing a submodule sets the package
# attribute of its name, which would shadow the function.
from importlib import import_module
from typing import TYPE_CHECKING, Any

from saescope.steer.ops import OPS

if TYPE_CHECKING:
    from saescope.steer.comparison import Comparison, compare
    from saescope.steer.frontier import Frontier, frontier_conditions, run_frontier
    from saescope.steer.generate import GenerationConfig, Rollouts, generate_with
    from saescope.steer.interventions import (
        Edit,
        FeatureIntervention,
        Intervention,
        UnitIntervention,
        VectorIntervention,
        ablate,
        add,
        clamp,
        intervene,
        scale,
    )
    from saescope.steer.measure import (
        SteeringPoint,
        mentions,
        pareto_front,
        plot_steering,
        steered_loss,
        steering_curve,
        success_rate,
    )
    from saescope.steer.neurons import clamp_neurons
    from saescope.steer.positions import ALL, GENERATED, Positions
    from saescope.steer.vectors import (
        Decomposition,
        SteeringVector,
        contrastive_vector,
        decompose,
        feature_part,
        feature_vector,
        load_vector,
        project_out,
        save_vector,
    )

_HOMES = {
    "ALL": "positions",
    "Comparison": "comparison",
    "Decomposition": "vectors",
    "Edit": "interventions",
    "FeatureIntervention": "interventions",
    "Frontier": "frontier",
    "GENERATED": "positions",
    "GenerationConfig": "generate",
    "Intervention": "interventions",
    "Positions": "positions",
    "Rollouts": "generate",
    "SteeringPoint": "measure",
    "SteeringVector": "vectors",
    "UnitIntervention": "interventions",
    "VectorIntervention": "interventions",
    "ablate": "interventions",
    "add": "interventions",
    "clamp": "interventions",
    "clamp_neurons": "neurons",
    "compare": "comparison",
    "contrastive_vector": "vectors",
    "decompose": "vectors",
    "feature_part": "vectors",
    "feature_vector": "vectors",
    "frontier_conditions": "frontier",
    "generate_with": "generate",
    "intervene": "interventions",
    "load_vector": "vectors",
    "mentions": "measure",
    "pareto_front": "measure",
    "plot_steering": "measure",
    "project_out": "vectors",
    "run_frontier": "frontier",
    "save_vector": "vectors",
    "scale": "interventions",
    "steered_loss": "measure",
    "steering_curve": "measure",
    "success_rate": "measure",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'saescope.steer' has no attribute {name!r}")
    return getattr(import_module(f"saescope.steer.{_HOMES[name]}"), name)


__all__ = [
    "ALL",
    "GENERATED",
    "OPS",
    "Comparison",
    "Decomposition",
    "Edit",
    "FeatureIntervention",
    "Frontier",
    "GenerationConfig",
    "Intervention",
    "Positions",
    "Rollouts",
    "SteeringPoint",
    "SteeringVector",
    "UnitIntervention",
    "VectorIntervention",
    "ablate",
    "add",
    "clamp",
    "clamp_neurons",
    "compare",
    "contrastive_vector",
    "decompose",
    "feature_part",
    "feature_vector",
    "frontier_conditions",
    "generate_with",
    "intervene",
    "load_vector",
    "mentions",
    "pareto_front",
    "plot_steering",
    "project_out",
    "run_frontier",
    "save_vector",
    "scale",
    "steered_loss",
    "steering_curve",
    "success_rate",
]
