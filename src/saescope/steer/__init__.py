"""Interventions on the model during a forward pass (more to come: SAE features, steering
vectors, generation with interventions)."""

from saescope.steer.neurons import clamp_neurons

__all__ = ["clamp_neurons"]
