"""Metrics of SAEs: reconstruction on held-out activations, and the SAE spliced into the model."""

from saescope.evaluate.reconstruction import ReconstructionStats, reconstruction_stats
from saescope.evaluate.splice import SplicedStats, spliced_stats

__all__ = ["ReconstructionStats", "SplicedStats", "reconstruction_stats", "spliced_stats"]
