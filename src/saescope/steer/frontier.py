"""A steering vector against its own SAE features on the success-vs-loss plane (GDM's comparison).

Three ways to steer with what a contrastive vector v holds, each at the same coefficients:

- ``vector``: v itself (``VectorIntervention``);
- ``features``: only the part of v in the span of its top SAE features' decoder rows, each row
  rescaled to the norm of v's row (``vectors.feature_part``), so that at every coefficient the
  same norm is added as by the vector: the features alone, at matching strength;
- ``without``: v with that part projected out (``vectors.project_out``: GDM's test of whether
  the features carry the effect), not rescaled, as in their method.

Each point is measured by ``measure.steering_curve``: the fraction of sampled rollouts on topic
(the same generation seed for every condition and coefficient) and the next-token loss on fixed
neutral text with the intervention applied. Coefficient 0 adds nothing under any condition, so
it is the unsteered model, measured once and shared by all three curves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from saescope.errors import SaescopeError
from saescope.models import LanguageModel
from saescope.sae import SAE
from saescope.steer.generate import GenerationConfig
from saescope.steer.interventions import Intervention, VectorIntervention
from saescope.steer.measure import ROLLOUTS, SteeringPoint, steered_loss, steering_curve
from saescope.steer.positions import ALL, Positions
from saescope.steer.vectors import (
    Decomposition,
    SteeringVector,
    decompose,
    feature_part,
    flat,
    project_out,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frontier:
    """The curves of one vector, its features, and the vector without them."""

    features: tuple[int, ...]
    """The SAE features compared against (decoder rows of ``sae``)."""
    decomposition: Decomposition
    """How the (flattened) vector decomposes: where ``auto`` features come from."""
    curves: dict[str, list[SteeringPoint]]
    """Condition name -> its points, in coefficient order (``vector``, ``features ...``,
    ``vector without ...``)."""
    vectors: dict[str, Tensor]
    """Condition name -> the tensor added at coefficient 1."""
    clean_loss: float
    """Loss on the neutral text without intervention."""
    rollouts: int
    """Rollouts behind each success rate."""


def frontier_conditions(vector: Tensor, sae: SAE, features: Sequence[int]) -> dict[str, Tensor]:
    """The three tensors compared (see the module docstring), by condition name."""
    names = ",".join(str(f) for f in features)
    label = f"feature{'s' if len(features) > 1 else ''} {names}"
    return {
        "vector": vector.float(),
        label: feature_part(vector, sae, features),
        f"vector without {label}": project_out(vector, sae, features),
    }


def run_frontier(
    model: LanguageModel,
    steering: SteeringVector,
    sae: SAE,
    prompts: Sequence[str],
    vocabulary: Sequence[str],
    batches: Sequence[Tensor],
    coefficients: Sequence[float],
    features: Sequence[int] | None = None,
    auto_features: int = 1,
    config: GenerationConfig = ROLLOUTS,
    positions: Positions = ALL,
    terms: int = 10,
) -> Frontier:
    """Measure every condition at every coefficient. ``features`` None: the ``auto_features``
    features with the largest share of the vector in its ``terms``-term decomposition."""
    steering.check(model)
    steering.check_sae(sae)
    if not coefficients:
        raise SaescopeError("no coefficients to measure; give e.g. 0,2,4,8")
    if not config.sample:
        raise SaescopeError("success rates need sampled rollouts (GenerationConfig.sample)")
    parts = decompose(flat(steering.vector), sae, k=max(terms, auto_features))
    if features is None:
        features = [f for f, _, _ in parts.top(auto_features)]
    if not features:
        raise SaescopeError("no features to compare against; give feature ids or auto")
    site = steering.site
    conditions = frontier_conditions(steering.vector, sae, features)
    clean_loss = steered_loss(model, [], batches)
    zero = [c for c in coefficients if c == 0]
    rest = [c for c in coefficients if c != 0]
    shared = (
        steering_curve(model, lambda c: [], zero[:1], prompts, vocabulary, batches, config)
        if zero
        else []
    )
    curves = {}
    for name, tensor in conditions.items():
        log.info("measuring %s", name)

        def make(c: float, t: Tensor = tensor) -> list[Intervention]:
            return [VectorIntervention(site, t, c, positions)]

        points = steering_curve(
            model,
            make,
            rest,
            prompts,
            vocabulary,
            batches,
            config,
        )
        curves[name] = sorted(shared + points, key=lambda p: coefficients.index(p.coefficient))
    return Frontier(
        tuple(int(f) for f in features),
        parts,
        curves,
        conditions,
        clean_loss,
        len(prompts) * config.samples,
    )
