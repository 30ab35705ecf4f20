"""One streaming pass of feature statistics, in memory bounded by (features x examples).

Per feature: how many tokens it fires on, the sum and max of its activations, a histogram of
log10 activation; the ``top`` contexts where it is largest; a uniform reservoir ``sample`` of the
contexts where it fires (grouped by quantile when shown, so a feature is not judged only by its
extremes); and, from a small shared reservoir of random windows, the ones where it is silent.

Examples are counted per (feature, context): a context enters a feature's lists at most once, at the
position of its largest activation there, with the window of tokens around that position and the
feature's activation on each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from saescope.sae import Latents

HIST_LOG10_RANGE = (-3.0, 5.0)
HIST_BINS = 64
PAD_TOKEN = -2
"""Token id of window slots outside the context."""
UNKNOWN_TOKEN = -1
"""Token id of positions the activations do not cover (BOS and other excluded tokens)."""


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
    seed: int = 0

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


class _ActLookup:
    """Activation of feature f at (context, position) of a batch, from its sparse entries.

    Two tables, each built on first use (late in a pass most batches need neither): a padded
    (N, width) table of each row's feature ids and values, searched per query, for sparse codes
    and few queries; a plain (N, F) matrix for dense codes (raw neurons: half of them positive)
    or many queries (early in a pass, when every feature takes in whole batches of examples).
    A (B, T) map gives each position its row; row N is "no row" (all zeros).
    """

    def __init__(self, batch: Batch, latents: Latents, values: Tensor, features: int) -> None:
        self.batch, self.latents, self.values, self.features = batch, latents, values, features
        self.n = len(batch.acts)

    @cached_property
    def row_of(self) -> Tensor:
        row_of = torch.full(self.batch.tokens.shape, self.n, dtype=torch.long)  # (B, T)
        row_of[self.batch.row_context, self.batch.row_position] = torch.arange(self.n)
        return row_of

    @cached_property
    def counts(self) -> Tensor:
        rows = self.latents.rows.cpu()
        return torch.zeros(self.n, dtype=torch.long).index_add_(0, rows, torch.ones_like(rows))

    @cached_property
    def width(self) -> int:
        return max(int(self.counts.max()) if self.n else 0, 1)

    @cached_property
    def padded(self) -> tuple[Tensor, Tensor]:
        """(ids, values), each (N+1, width)."""
        rows, features = self.latents.rows.cpu(), self.latents.indices.cpu()
        slot = torch.arange(len(rows)) - (self.counts.cumsum(0) - self.counts)[rows]
        ids = torch.full((self.n + 1, self.width), -1, dtype=torch.long)
        ids[rows, slot] = features
        values = torch.zeros(self.n + 1, self.width)
        values[rows, slot] = self.values
        return ids, values

    @cached_property
    def dense(self) -> Tensor:
        """(N+1, F) values."""
        dense = torch.zeros(self.n + 1, self.features)
        dense[self.latents.rows.cpu(), self.latents.indices.cpu()] = self.values
        return dense

    def _use_dense(self, queries: int) -> bool:
        if "dense" in self.__dict__:
            return True
        return queries * self.width > (self.n + 1) * self.features // 4

    def __call__(self, c: Tensor, p: Tensor, f: Tensor, chunk: int = 1 << 18) -> Tensor:
        """Values at (c, p) for features f (all the same shape; p already within the context)."""
        rows = self.row_of[c, p].flatten()
        f = f.flatten()
        if self._use_dense(len(rows)):
            return self.dense[rows, f].view(c.shape)
        ids, values = self.padded
        out = torch.empty(len(rows))
        for i in range(0, len(rows), chunk):
            r, want = rows[i : i + chunk], f[i : i + chunk, None]
            out[i : i + chunk] = (values[r] * (ids[r] == want)).sum(1)
        return out.view(c.shape)

    def fired_in(self, c: int, lo: int, hi: int) -> Tensor:
        """(features,) bool: which features fire anywhere in positions lo..hi of context c."""
        rows = self.row_of[c, max(lo, 0) : min(hi, self.row_of.shape[1] - 1) + 1]
        if self._use_dense(0):  # the dense table if this batch built it anyway
            return (self.dense[rows] > 0).any(0)
        fired = torch.zeros(self.features + 1, dtype=torch.bool)
        fired[self.padded[0][rows].flatten()] = True  # id -1 lands in the spare last slot
        return fired[: self.features]
