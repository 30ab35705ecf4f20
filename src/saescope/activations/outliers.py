"""The one outlier policy: what training, evaluation and the index do with huge-norm rows.

On Gemma 3 270M a few tokens (the apostrophe above all) reach residual norms ~10x the median
(~34,000 against ~3,400 at layer 6): 0.05% of rows, a fifth of the variance. An SAE spends
features on them and every view ranked by raw activation shows them. SAEDashboard's
``ignore_high_activation_norm_multiple`` is the precedent for the rule used here:

    outlier  <=>  ||x|| > multiple * median ||x||

The median is measured once per cache and site, on its first shard (``ActivationCache.
outlier_rule``): deterministic, one shard's read, no manifest field an older saescope would
refuse, the same number for training, held-out evaluation and the index over one cache, and
within 0.4% of the median over all rows on the default model (3,385 against 3,373). Without a
cache (live activations) it is the median of the first batch seen.

Modes, applied to rows before they are batched, so the train layer still takes plain tensors:
- ``keep``: rows as they are.
- ``downweight``: an outlier row is scaled so that its norm equals the threshold (direction
  kept); the trainer's loss then weighs it like a large ordinary row, not like 10 of them.
- ``exclude``: outlier rows are dropped.
Evaluation always reports FVU on all rows (as captured) and on the rows that are not outliers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
from torch import Tensor

from saescope.errors import SaescopeError

Mode = Literal["keep", "downweight", "exclude"]
MODES: tuple[str, ...] = get_args(Mode)


def row_norms(x: Tensor) -> Tensor:
    """(N,) float32 L2 norm of each row of ``x`` (N, d), computed in float32 whatever ``x``'s
    dtype: capture stores exactly this next to the activations, so a cache without stored
    norms gives the same numbers computed on the fly."""
    return torch.linalg.vector_norm(x.float(), dim=-1)


@dataclass(frozen=True)
class OutlierPolicy:
    """Rows whose norm exceeds ``multiple`` x the median norm are outliers; ``mode`` says what
    training and the index do with them (evaluation reports both with and without them)."""

    mode: Mode = "exclude"
    """keep: train and index on them as they are; downweight: scale each to the threshold norm;
    exclude: drop them."""
    multiple: float = 5.0
    """An outlier's norm exceeds this multiple of the median row norm."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SaescopeError(
                f"outlier mode {self.mode!r} is not one of {', '.join(MODES)}; pass --outliers "
                "keep, downweight or exclude"
            )
        if (
            isinstance(self.multiple, bool)
            or not isinstance(self.multiple, int | float)
            or not self.multiple > 1
            or self.multiple == float("inf")
        ):
            raise SaescopeError(
                f"outlier multiple must be a finite number > 1 (a multiple of the median norm), "
                f"got {self.multiple!r}; pass e.g. --outlier-multiple 5"
            )

    def rule(self, median: float) -> OutlierRule:
        """This policy with its threshold fixed by the data's ``median`` row norm."""
        if not median > 0 or median == float("inf"):
            raise SaescopeError(
                f"the median row norm must be a finite number > 0 to set the outlier threshold, "
                f"found {median!r}: are the activations all zero?"
            )
        return OutlierRule(self, float(median))

    def rule_from(self, sample: Tensor) -> OutlierRule:
        """The rule whose median is measured on ``sample`` (N, d) rows."""
        if len(sample) == 0:
            raise SaescopeError("cannot measure the median row norm on no rows")
        norms = row_norms(sample)
        # Non-finite rows are left to the callers' own checks, which name where they are.
        finite = norms[norms.isfinite()]
        if len(finite) == 0:
            raise SaescopeError(
                f"every one of the {len(norms)} rows has a nan or inf norm: the activations are "
                "not finite; check the model (its dtype, its weights) before indexing or training"
            )
        return self.rule(float(finite.median()))


@dataclass(frozen=True)
class OutlierRule:
    """An ``OutlierPolicy`` with its threshold resolved; applied identically everywhere."""

    policy: OutlierPolicy
    median: float
    """Median row norm of the data the threshold was measured on."""

    @property
    def threshold(self) -> float:
        return self.policy.multiple * self.median

    def outliers(self, x: Tensor, norms: Tensor | None = None) -> Tensor:
        """(N,) bool: which rows of ``x`` (N, d) are outliers (``norms``: theirs, if known)."""
        return (row_norms(x) if norms is None else norms.float()) > self.threshold

    def select(self, x: Tensor, norms: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(rows as the policy hands them on, which rows of ``x`` they are: None for all).

        ``exclude`` drops outliers; ``downweight`` scales each to norm ``threshold`` (in
        float32, returned in ``x``'s dtype); ``keep`` returns ``x`` itself.
        """
        if self.policy.mode == "keep":
            return x, None
        norms = row_norms(x) if norms is None else norms.float()  # (N,)
        mask = norms > self.threshold  # (N,)
        if not bool(mask.any()):
            return x, None
        if self.policy.mode == "exclude":
            kept = (~mask).nonzero().squeeze(1)  # (M,)
            return x[kept], kept
        scale = torch.where(mask, self.threshold / norms.clamp_min(1e-30), 1.0)  # (N,)
        return (x.float() * scale[:, None]).to(x.dtype), None

    def apply(self, x: Tensor, norms: Tensor | None = None) -> Tensor:
        """The rows of ``x`` (N, d) as the policy hands them on."""
        return self.select(x, norms)[0]

    def excluding(self) -> OutlierRule:
        """The same threshold, rows above it dropped: what evaluation's "without outliers"
        scores whatever the training mode."""
        return OutlierRule(replace(self.policy, mode="exclude"), self.median)

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": self.policy.mode,
            "multiple": self.policy.multiple,
            "median_norm": self.median,
            "threshold": self.threshold,
        }


def apply_to_batches(
    batches: Iterable[Tensor], policy: OutlierPolicy | OutlierRule
) -> Iterator[Tensor]:
    """``batches`` with the policy applied to each; a policy's median comes from the first
    batch (for live activations, which have no cache to measure it on once)."""
    rule = policy if isinstance(policy, OutlierRule) else None
    for x in batches:
        if rule is None:
            assert isinstance(policy, OutlierPolicy)
            rule = policy.rule_from(x)
        out = rule.apply(x)
        if len(out):
            yield out
