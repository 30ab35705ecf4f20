"""Interventions during the forward pass and generation: SAE features, raw units and directions
(clamp, add, scale, ablate), steering vectors, and measuring what steering does."""

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
from saescope.steer.neurons import clamp_neurons
from saescope.steer.positions import ALL, GENERATED, Positions

__all__ = [
    "ALL",
    "GENERATED",
    "Edit",
    "FeatureIntervention",
    "GenerationConfig",
    "Intervention",
    "Positions",
    "Rollouts",
    "UnitIntervention",
    "VectorIntervention",
    "ablate",
    "add",
    "clamp",
    "clamp_neurons",
    "generate_with",
    "intervene",
    "scale",
]
