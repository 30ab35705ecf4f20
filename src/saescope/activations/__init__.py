"""Activation capture into a sharded on-disk cache, reading it back, and live streaming."""

from saescope.activations.cache import ActivationCache, open_activations
from saescope.activations.live import stream_activations
from saescope.activations.manifest import Manifest, ShardInfo
from saescope.activations.writer import capture

__all__ = [
    "ActivationCache",
    "Manifest",
    "ShardInfo",
    "capture",
    "open_activations",
    "stream_activations",
]
