"""Jobs: the layer that joins a data source (an activation cache, a live model) to the trainer.

``train/`` takes an iterator of tensors and knows nothing of where it comes from; this layer
opens the cache or the model, resolves what the data decides (site, width, token budget,
encoder dtype, the rank's share), trains and scores the held-out rows. It may import every
layer below it; only the leaves (``cli``, ``quickstart``, examples) import it.
"""

from saescope.jobs.train import (
    SAESpec,
    TrainedSAE,
    metadata_from_cache,
    sweep,
    train_from_cache,
    train_live,
    train_saes,
)

__all__ = [
    "SAESpec",
    "TrainedSAE",
    "metadata_from_cache",
    "sweep",
    "train_from_cache",
    "train_live",
    "train_saes",
]
