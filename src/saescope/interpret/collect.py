"""One streaming pass of feature statistics, in memory bounded by (features x examples).

Per feature: how many tokens it fires on, the sum and max of its activations, a histogram of
log10 activation; the ``top`` contexts where it is largest; a uniform reservoir ``sample`` of the
contexts where it fires (grouped by quantile when shown, so a feature is not judged only by its
extremes); and, from a small shared reservoir of random windows, the ones where it is silent.

For scoring explanations (``saescope.interpret.scoring``) it also keeps a held-out set, drawn
with its own generator so that the shown examples are the same with or without it: a second
uniform reservoir of firing contexts (``heldout``; contexts also among a feature's top or sampled
ones are dropped when the index is written, so the explainer never saw them), and a larger
shared reservoir of random windows that records which features fire in each, from which the
writer takes a feature's silent contexts, near misses (windows where a neighbouring feature
fires) first.

Examples are counted per (feature, context): a context enters a feature's lists at most once, at the
position of its largest activation there, with the window of tokens around that position and the
feature's activation on each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae import Latents

HIST_LOG10_RANGE = (-3.0, 5.0)
HIST_BINS = 64
PAD_TOKEN = -2
"""Token id of window slots outside the context."""
UNKNOWN_TOKEN = -1
"""Token id of positions the activations do not cover (BOS and other excluded tokens)."""
HELDOUT_OFFERS = 16
"""Random windows of each batch offered to the held-out pool (the contrast pool takes one): a
build over a few dozen batches must fill a pool of hundreds."""


@dataclass(frozen=True)
class CollectConfig:
    top: int = 20
    """Top-activating contexts kept per feature."""
    samples: int = 10
    """Contexts sampled uniformly among those where a feature fires (shown by quantile)."""
    zeros: int = 3
    """Random contexts where the feature does not fire, shown for contrast."""
    before: int = 20
    """Tokens of each example window before the focus token."""
    after: int = 5
    """Tokens of each example window after the focus token."""
    zero_pool: int = 64
    """Random windows kept (shared by all features) to draw the non-firing examples from."""
    heldout: int = 20
    """Firing contexts per feature kept for scoring explanations, never shown to the explainer."""
    heldout_zeros: int = 10
    """Silent contexts per feature kept for scoring, up to half of them near misses (as many
    as ``ScoreConfig.silent`` uses: on the quickstart SAE 20 made an 8k-token index 92 MB)."""
    heldout_pool: int = 512
    """Random windows kept (shared by all features) to draw the held-out silent ones from."""
    seed: int = 0

    def __post_init__(self) -> None:
        least = {"top": 1, "samples": 1, "zeros": 0, "before": 0, "after": 0, "zero_pool": 1,
                 "heldout": 0, "heldout_zeros": 0, "heldout_pool": 1}  # fmt: skip
        for name, low in least.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise SaescopeError(f"index {name} must be an integer >= {low}, got {value!r}")
        if self.zeros > self.zero_pool:
            raise SaescopeError(
                f"index zeros ({self.zeros}) must be at most zero_pool ({self.zero_pool}), the "
                "windows they are drawn from"
            )
        if self.heldout_zeros > self.heldout_pool:
            raise SaescopeError(
                f"index heldout_zeros ({self.heldout_zeros}) must be at most heldout_pool "
                f"({self.heldout_pool}), the windows they are drawn from"
            )

    @property
    def window(self) -> int:
        return self.before + 1 + self.after


@dataclass(frozen=True)
class Batch:
    """Activations of whole contexts, as rows, with the tokens they came from."""

    tokens: Tensor
    """(B, T) token ids (``UNKNOWN_TOKEN`` where the activations exclude a position)."""
    contexts: Tensor
    """(B,) global index of each context in the stream."""
    acts: Tensor
    """(N, d) activation rows."""
    row_context: Tensor
    """(N,) which of the B contexts each row is from."""
    row_position: Tensor
    """(N,) its position in that context."""


class Slots:
    """For every feature, ``size`` examples ranked by a score (largest kept)."""

    def __init__(self, features: int, size: int, window: int) -> None:
        self.score = torch.full((features, size), float("-inf"))
        self.value = torch.zeros(features, size)
        self.context = torch.full((features, size), -1, dtype=torch.long)
        self.position = torch.full((features, size), -1, dtype=torch.long)
        self.tokens = torch.full((features, size, window), PAD_TOKEN, dtype=torch.int32)
        self.acts = torch.zeros(features, size, window)

    def state(self, prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}.{k}": v for k, v in vars(self).items()}

    def load(self, prefix: str, state: dict[str, Tensor]) -> None:
        for key in vars(self):
            setattr(self, key, state[f"{prefix}.{key}"])


class FeatureCollector:
    """Accumulates every per-feature statistic of the index from sparse feature batches."""

    def __init__(self, features: int, cfg: CollectConfig = CollectConfig()) -> None:
        self.cfg = cfg
        self.features = features
        self.tokens_seen = 0
        self.fires = torch.zeros(features, dtype=torch.long)
        self.act_sum = torch.zeros(features, dtype=torch.float64)
        self.act_max = torch.zeros(features)
        self.hist = torch.zeros(features, HIST_BINS, dtype=torch.long)
        self.top = Slots(features, cfg.top, cfg.window)
        self.sample = Slots(features, cfg.samples, cfg.window)
        self.pool_score = torch.full((cfg.zero_pool,), float("-inf"))
        self.pool_tokens = torch.full((cfg.zero_pool, cfg.window), PAD_TOKEN, dtype=torch.int32)
        self.pool_context = torch.full((cfg.zero_pool,), -1, dtype=torch.long)
        self.pool_fired = torch.zeros(cfg.zero_pool, features, dtype=torch.bool)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.heldout = Slots(features, cfg.heldout, cfg.window)
        self.held_pool = Slots(1, cfg.heldout_pool, cfg.window)  # feature axis unused
        self.held_fired = torch.zeros(cfg.heldout_pool, features, dtype=torch.bool)
        self.held_generator = torch.Generator().manual_seed(cfg.seed + 1)

    # -- the pass ----------------------------------------------------------------------------

    def update(self, batch: Batch, latents: Latents) -> None:
        """Fold one batch in; ``latents`` encode ``batch.acts`` (only positive values)."""
        F, B = self.features, batch.tokens.shape[0]
        values = latents.values.float().cpu()  # (nnz,)
        feature = latents.indices.cpu()
        ctx = batch.row_context[latents.rows.cpu()]
        pos = batch.row_position[latents.rows.cpu()]
        self.tokens_seen += len(batch.acts)
        self._update_stats(values, feature)

        key = ctx * F + feature  # one cell per (context, feature)
        ctx_max = torch.zeros(B * F).scatter_reduce_(0, key, values, "amax")
        is_max = values == ctx_max[key]
        ctx_pos = torch.zeros(B * F, dtype=torch.long).scatter_(0, key[is_max], pos[is_max])
        ctx_max, ctx_pos = ctx_max.view(B, F), ctx_pos.view(B, F)
        lookup = _ActLookup(batch, latents, values, F)

        top_score = torch.where(ctx_max > 0, ctx_max, float("-inf"))
        self._merge(self.top, top_score, ctx_max, ctx_pos, batch, lookup)
        u = torch.rand(B, F, generator=self.generator)
        sample_score = torch.where(ctx_max > 0, u, float("-inf"))
        self._merge(self.sample, sample_score, ctx_max, ctx_pos, batch, lookup)
        self._update_pool(batch, lookup)
        if self.cfg.heldout:
            u = torch.rand(B, F, generator=self.held_generator)
            held_score = torch.where(ctx_max > 0, u, float("-inf"))
            self._merge(self.heldout, held_score, ctx_max, ctx_pos, batch, lookup)
        self._update_held_pool(batch, lookup)

    def _update_stats(self, values: Tensor, feature: Tensor) -> None:
        # index_add_ rather than bincount: integer bincount is ~50x slower on CPU.
        self.fires.index_add_(0, feature, torch.ones_like(feature))
        self.act_sum.index_add_(0, feature, values.double())
        self.act_max.scatter_reduce_(0, feature, values, "amax")
        lo, hi = HIST_LOG10_RANGE
        bins = ((values.log10() - lo) / (hi - lo) * HIST_BINS).floor().long()
        cell = feature * HIST_BINS + bins.clamp(0, HIST_BINS - 1)
        self.hist.view(-1).index_add_(0, cell, torch.ones_like(cell))

    def _merge(
        self,
        slots: Slots,
        score: Tensor,  # (B, F)
        ctx_max: Tensor,  # (B, F)
        ctx_pos: Tensor,  # (B, F)
        batch: Batch,
        lookup: _ActLookup,
    ) -> None:
        """Keep each feature's ``size`` best-scoring examples among its slots and this batch.

        Slots are unordered storage: a newcomer overwrites the slot of an example it pushes
        out, so nothing is moved and only the newcomers' windows are built.
        """
        size = slots.score.shape[1]
        # Only features with a context that beats their current worst slot can change.
        worst = slots.score.min(dim=1).values  # (F,)
        (active,) = torch.nonzero((score > worst).any(dim=0), as_tuple=True)
        if len(active) == 0:
            return
        take = min(size, score.shape[0])
        best, which = score[:, active].t().topk(take, dim=1)  # (A, take): best contexts here
        merged = torch.cat([slots.score[active], best], dim=1)  # (A, size + take)
        order = merged.topk(size, dim=1).indices  # (A, size)
        kept = torch.zeros_like(merged, dtype=torch.bool).scatter_(1, order, True)
        # Per feature, as many old slots drop out as newcomers come in: pair them in order.
        a, free = torch.nonzero(~kept[:, :size], as_tuple=True)
        a_new, new = torch.nonzero(kept[:, size:], as_tuple=True)
        real = best[a_new, new] > float("-inf")
        a, free, new = a[real], free[real], new[real]
        if len(a) == 0:
            return
        f = active[a]
        c = which[a, new]  # batch context of each newcomer
        p = ctx_pos[c, f]
        slots.score[f, free] = best[a, new]
        slots.value[f, free] = ctx_max[c, f]
        slots.context[f, free] = batch.contexts[c]
        slots.position[f, free] = p
        slots.tokens[f, free], slots.acts[f, free] = self._window(batch, lookup, c, p, f)

    def _window(
        self, batch: Batch, lookup: _ActLookup, c: Tensor, p: Tensor, f: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Token ids and activations (len(c), W) of the windows centred on (c, p) for feature f."""
        T = batch.tokens.shape[1]
        offsets = torch.arange(-self.cfg.before, self.cfg.after + 1)
        where = p[:, None] + offsets  # (n, W)
        inside = (where >= 0) & (where < T)
        tokens = batch.tokens[c[:, None], where.clamp(0, T - 1)].to(torch.int32)
        tokens = torch.where(inside, tokens, PAD_TOKEN)
        if f is None:
            return tokens, torch.zeros(tokens.shape)
        acts = lookup(
            c[:, None].expand_as(where), where.clamp(0, T - 1), f[:, None].expand_as(where)
        )
        return tokens, torch.where(inside, acts, 0.0)

    def _update_pool(self, batch: Batch, lookup: _ActLookup) -> None:
        """Offer one random window of this batch to the shared reservoir of contrast windows."""
        B, T = batch.tokens.shape
        u = torch.rand(1, generator=self.generator)
        slot = int(self.pool_score.argmin())
        if not u > self.pool_score[slot]:
            return
        c = torch.randint(B, (1,), generator=self.generator)
        p = torch.randint(T, (1,), generator=self.generator)
        self.pool_score[slot] = u
        self.pool_tokens[slot] = self._window(batch, lookup, c, p, None)[0][0]
        self.pool_context[slot] = batch.contexts[c]
        lo, hi = int(p) - self.cfg.before, int(p) + self.cfg.after
        self.pool_fired[slot] = lookup.fired_in(int(c), lo, hi)

    def _update_held_pool(self, batch: Batch, lookup: _ActLookup) -> None:
        """Offer ``HELDOUT_OFFERS`` random windows of this batch to the held-out pool, recording
        for each which features fire anywhere in it."""
        B, T = batch.tokens.shape
        pool = self.held_pool
        for _ in range(HELDOUT_OFFERS):
            u = torch.rand(1, generator=self.held_generator)
            c = torch.randint(B, (1,), generator=self.held_generator)
            p = torch.randint(T, (1,), generator=self.held_generator)
            slot = int(pool.score[0].argmin())
            if not u > pool.score[0, slot]:
                continue
            pool.score[0, slot] = u
            pool.tokens[0, slot] = self._window(batch, lookup, c, p, None)[0][0]
            pool.context[0, slot] = batch.contexts[c]
            pool.position[0, slot] = p
            lo, hi = int(p) - self.cfg.before, int(p) + self.cfg.after
            self.held_fired[slot] = lookup.fired_in(int(c), lo, hi)

    # -- results -----------------------------------------------------------------------------

    def zero_examples(self, feature: int) -> list[int]:
        """Pool slots (up to ``cfg.zeros``) of windows where ``feature`` never fires."""
        usable = (self.pool_score > float("-inf")) & ~self.pool_fired[:, feature]
        return torch.nonzero(usable).flatten()[: self.cfg.zeros].tolist()

    def state(self) -> dict[str, Tensor]:
        return {
            "tokens_seen": torch.tensor(self.tokens_seen),
            "fires": self.fires,
            "act_sum": self.act_sum,
            "act_max": self.act_max,
            "hist": self.hist,
            "pool_score": self.pool_score,
            "pool_tokens": self.pool_tokens,
            "pool_context": self.pool_context,
            "pool_fired": self.pool_fired,
            "generator": self.generator.get_state(),
            **self.top.state("top"),
            **self.sample.state("sample"),
            **self.heldout.state("heldout"),
            **self.held_pool.state("held_pool"),
            "held_fired": self.held_fired,
            "held_generator": self.held_generator.get_state(),
        }

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.tokens_seen = int(state["tokens_seen"])
        for name in ("fires", "act_sum", "act_max", "hist"):
            setattr(self, name, state[name])
        for name in ("pool_score", "pool_tokens", "pool_context", "pool_fired"):
            setattr(self, name, state[name])
        self.generator.set_state(state["generator"])
        self.top.load("top", state)
        self.sample.load("sample", state)
        self.heldout.load("heldout", state)
        self.held_pool.load("held_pool", state)
        self.held_fired = state["held_fired"]
        self.held_generator.set_state(state["held_generator"])


class _ActLookup:
    """Activation of feature f at (context, position) of a batch, from its sparse entries.

    Each call scatters the entries of just the features it asks about into a dense
    (N + 1, asked) table and reads it, so the cost follows the newcomers: a few hundred features
    late in a pass. Early on, when most features take in whole batches of examples, one
    (N + 1, F) table is built and shared by the batch's calls.
    """

    def __init__(self, batch: Batch, latents: Latents, values: Tensor, features: int) -> None:
        self.batch, self.values, self.features = batch, values, features
        self.rows, self.indices = latents.rows.cpu(), latents.indices.cpu()
        self.n = len(batch.acts)

    @cached_property
    def row_of(self) -> Tensor:
        """(B, T) row of each position; row N means "no row" (an excluded position)."""
        row_of = torch.full(self.batch.tokens.shape, self.n, dtype=torch.long)
        row_of[self.batch.row_context, self.batch.row_position] = torch.arange(self.n)
        return row_of

    @cached_property
    def full(self) -> Tensor:
        """(N + 1, F): every feature, built once when calls ask about most of them."""
        table = torch.zeros(self.n + 1, self.features)
        table[self.rows, self.indices] = self.values
        return table

    def __call__(self, c: Tensor, p: Tensor, f: Tensor) -> Tensor:
        """Values at (c, p) for features f (all the same shape; p already within the context)."""
        rows = self.row_of[c, p].flatten()
        asked, column = torch.unique(f.flatten(), return_inverse=True)
        if "full" in self.__dict__ or 4 * len(asked) > self.features:
            return self.full[rows, f.flatten()].view(c.shape)
        column_of = torch.full((self.features,), -1, dtype=torch.long)
        column_of[asked] = torch.arange(len(asked))
        entry_column = column_of[self.indices]  # (nnz,)
        hit = entry_column >= 0
        table = torch.zeros(self.n + 1, len(asked))
        table[self.rows[hit], entry_column[hit]] = self.values[hit]
        return table[rows, column].view(c.shape)

    def fired_in(self, c: int, lo: int, hi: int) -> Tensor:
        """(features,) bool: which features fire anywhere in positions lo..hi of context c."""
        in_window = torch.zeros(self.n + 1, dtype=torch.bool)
        in_window[self.row_of[c, max(lo, 0) : min(hi, self.row_of.shape[1] - 1) + 1]] = True
        in_window[self.n] = False
        fired = torch.zeros(self.features, dtype=torch.bool)
        fired[self.indices[in_window[self.rows]]] = True
        return fired
