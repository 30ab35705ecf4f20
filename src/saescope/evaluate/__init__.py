"""Metrics of SAEs: reconstruction on held-out activations (more in later issues)."""

from saescope.evaluate.reconstruction import ReconstructionStats, reconstruction_stats

__all__ = ["ReconstructionStats", "reconstruction_stats"]
