"""Was the SAE still improving fast when training ended? One measurable rule.

The LR decay at the end of training lowers the FVU by itself, so the rule looks before it: the
mean training FVU (each batch is scored before the step trains on it, so in the first epoch it
is held-out) over the last tenth of training before the decay, against the mean over the tenth
two tenths earlier. A fall of more than ``FALL`` (relative) over that fifth of training means
the SAE was far from done: more tokens (``--epochs``, ``--tokens``) would lower its FVU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FALL = 0.10
"""Relative FVU fall over a fifth of training (before the decay) above which a run is called
undertrained (see benchmarks/width_scaling.md for the falls measured)."""


@dataclass(frozen=True)
class Undertrained:
    """The rule's verdict on a run that was still improving fast."""

    fvu_early: float
    """Mean training FVU over the earlier window."""
    fvu_late: float
    """Mean training FVU over the last tenth of training before the LR decay."""
    steps: tuple[int, int, int, int]
    """The two windows: [early start, early end), [late start, late end)."""
    fall: float
    """(fvu_early - fvu_late) / fvu_early."""
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self, name: str, tokens: int) -> str:
        (a, b, c, d), pct = self.steps, f"{self.fall:.0%}"
        return (
            f"{name} looks undertrained: its training FVU fell {pct} (from {self.fvu_early:.4f} "
            f"over steps {a}-{b - 1} to {self.fvu_late:.4f} over steps {c}-{d - 1}), more than "
            f"the {FALL:.0%} of the rule ({self.rule}); after {tokens:,} tokens it was still "
            "improving fast: train on more tokens (--epochs, --tokens, or a larger cache)"
        )


class FvuWatch:
    """Sums the training FVU over the rule's two windows as the steps go by."""

    def __init__(self, steps: int, decay_start: float, warmup_steps: int) -> None:
        decay_from = int(decay_start * steps)
        length = max(1, steps // 10)
        self.late = (decay_from - length, decay_from)
        self.early = (decay_from - 3 * length, decay_from - 2 * length)
        # A window inside the warm-up would see the FVU fall because the LR is still rising.
        self.judged = self.early[0] >= warmup_steps
        self.sums = [0.0, 0.0]
        self.counts = [0, 0]

    def update(self, step: int, fvu: float) -> None:
        for i, (start, end) in enumerate((self.early, self.late)):
            if start <= step < end:
                self.sums[i] += fvu
                self.counts[i] += 1

    def verdict(self) -> Undertrained | None:
        """The verdict once both windows are complete; None if the run is not undertrained by
        the rule, or too short for it (its windows reach into the warm-up)."""
        full = [end - start for start, end in (self.early, self.late)]
        if not self.judged or self.counts != full:
            return None
        early, late = (s / n for s, n in zip(self.sums, self.counts, strict=True))
        fall = (early - late) / early if early > 0 else 0.0
        if fall <= FALL:
            return None
        rule = (
            f"the mean FVU of the last tenth of training before the LR decay is more than "
            f"{FALL:.0%} below that of the tenth two tenths earlier"
        )
        return Undertrained(early, late, (*self.early, *self.late), fall, rule)

    def state(self) -> dict[str, list]:
        return {"sums": list(self.sums), "counts": list(self.counts)}

    def load_state(self, state: dict[str, list]) -> None:
        self.sums = [float(s) for s in state["sums"]]
        self.counts = [int(c) for c in state["counts"]]
