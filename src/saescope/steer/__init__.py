"""Interventions during the forward pass and generation: SAE features, raw units and directions
(clamp, add, scale, ablate), steering vectors, and measuring what steering does."""

from saescope.steer.compare import Comparison, compare
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
    contrastive_vector,
    decompose,
    feature_vector,
    project_out,
)

__all__ = [
    "ALL",
    "GENERATED",
    "Comparison",
    "Decomposition",
    "Edit",
    "FeatureIntervention",
    "GenerationConfig",
    "Intervention",
    "Positions",
    "Rollouts",
    "SteeringPoint",
    "UnitIntervention",
    "VectorIntervention",
    "ablate",
    "add",
    "clamp",
    "clamp_neurons",
    "compare",
    "contrastive_vector",
    "decompose",
    "feature_vector",
    "generate_with",
    "intervene",
    "mentions",
    "pareto_front",
    "plot_steering",
    "project_out",
    "scale",
    "steered_loss",
    "steering_curve",
    "success_rate",
]
