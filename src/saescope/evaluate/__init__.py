"""Metrics of SAEs: reconstruction on held-out activations, and the SAE spliced into the model."""

from saescope.evaluate.geometry import Geometry, geometry
from saescope.evaluate.reconstruction import ReconstructionStats, reconstruction_stats
from saescope.evaluate.result import EvalResult, evaluate
from saescope.evaluate.splice import SplicedStats, spliced_stats

__all__ = [
    "EvalResult",
    "Geometry",
    "ReconstructionStats",
    "SplicedStats",
    "evaluate",
    "geometry",
    "reconstruction_stats",
    "spliced_stats",
]
