"""Reading an activation cache: shuffled batches with bounded memory, and random access by row."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from saescope.activations.manifest import MANIFEST, Manifest, read_manifest
from saescope.activations.outliers import OutlierPolicy, OutlierRule, row_norms
from saescope.activations.shards import (
    PROVENANCE,
    ShardView,
    acts_key,
    check_shapes,
    norms_key,
    read_header,
    read_shard,
)
from saescope.errors import SaescopeError

log = logging.getLogger(__name__)


def open_activations(path: str | Path, allow_incomplete: bool = False) -> ActivationCache:
    """Open a cache written by ``capture``. An unfinished capture is an error unless allowed."""
    root = Path(path)
    manifest = read_manifest(root / MANIFEST)
    if not manifest.complete and not allow_incomplete:
        raise SaescopeError(
            f"the capture in {root} is unfinished ({manifest.rows:,} of {manifest.tokens:,} "
            "tokens); finish it with `saescope capture --resume ...` (same arguments), or open it "
            "with allow_incomplete=True"
        )
    if not manifest.shards:
        raise SaescopeError(f"the cache in {root} holds no shards")
    return ActivationCache(root, manifest)


class ActivationCache:
    """A directory of shards and its manifest; rows are numbered across shards in manifest order."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest
        self._views: dict[int, ShardView] = {}
        self._medians: dict[str, float] = {}

    def __len__(self) -> int:
        return self.manifest.rows

    def __repr__(self) -> str:
        return (
            f"ActivationCache({str(self.root)!r}, model={self.manifest.model!r}, "
            f"sites={self.sites}, rows={len(self):,}, dtype={self.manifest.dtype})"
        )

    @property
    def sites(self) -> list[str]:
        return list(self.manifest.sites)

    def d(self, site: str | None = None) -> int:
        return self.manifest.sites[self.site(site)]

    def site(self, site: str | None = None) -> str:
        """Resolve ``site`` (any spelling; ``None`` if the cache holds only one)."""
        from saescope.models.sites import Site

        if site is None:
            if len(self.sites) != 1:
                raise SaescopeError(f"this cache holds several sites {self.sites}; name one")
            return self.sites[0]
        name = Site.parse(site).name
        if name not in self.manifest.sites:
            raise SaescopeError(f"site {name} is not in this cache; it holds {self.sites}")
        return name

    @cached_property
    def _offsets(self) -> np.ndarray:
        """First row of each shard. Random access trusts these, so before the first use every
        shard's header is checked against its manifest row count (a misstated count would
        otherwise return other rows without a word)."""
        for i, info in enumerate(self.manifest.shards):
            header, _ = read_header(self._path(i))
            shapes = {k: meta["shape"] for k, meta in header.items()}
            check_shapes(self._path(i), info, self.manifest.sites, shapes)
        return np.cumsum([0] + [s.rows for s in self.manifest.shards])

    def _path(self, i: int) -> Path:
        return self.root / self.manifest.shards[i].file

    def load_shard(self, i: int, verify: bool = True) -> dict[str, Tensor]:
        """All tensors of shard ``i``, checked against the manifest (size, checksum if ``verify``,
        shapes) and refused if an activation is NaN or inf."""
        return read_shard(
            self._path(i), self.manifest.shards[i], self.manifest.sites, verify=verify
        )

    def shard_norms(self, tensors: dict[str, Tensor], site: str | None = None) -> Tensor:
        """(N,) float32 row norms at ``site`` of a loaded shard: the stored ``norms.<site>``, or
        computed from the activations for caches captured before norms were recorded."""
        name = self.site(site)
        stored = tensors.get(norms_key(name))
        return stored.float() if stored is not None else row_norms(tensors[acts_key(name)])

    def median_norm(self, site: str | None = None) -> float:
        """Median row norm at ``site`` over the first shard: the outlier threshold's unit, one
        number per cache and site (see ``saescope.activations.outliers``)."""
        name = self.site(site)
        if name not in self._medians:
            norms = self.shard_norms(self.load_shard(0), name)
            self._medians[name] = float(norms.median())
        return self._medians[name]

    def outlier_rule(
        self, policy: OutlierPolicy | OutlierRule, site: str | None = None
    ) -> OutlierRule:
        """``policy`` with its threshold set by this cache's median norm at ``site`` (a rule
        already resolved is returned as it is)."""
        if isinstance(policy, OutlierRule):
            return policy
        return policy.rule(self.median_norm(site))

    def split(self, holdout_rows: int) -> tuple[list[int], list[int]]:
        """(training shards, held-out shards): the last shards holding >= ``holdout_rows`` rows.

        Whole shards are held out so that no context contributes to both sides.
        """
        held: list[int] = []
        for i in reversed(range(len(self.manifest.shards))):
            if sum(self.manifest.shards[j].rows for j in held) >= holdout_rows:
                break
            held.insert(0, i)
        train = [i for i in range(len(self.manifest.shards)) if i not in held]
        if holdout_rows and not train:
            raise SaescopeError(
                f"cannot hold out {holdout_rows:,} rows: the cache has {len(self):,} rows in "
                f"{len(self.manifest.shards)} shards; capture more or use smaller --shard-rows"
            )
        return train, held

    def rows_in(self, shards: Sequence[int]) -> int:
        return sum(self.manifest.shards[i].rows for i in shards)

    def verify(self) -> None:
        """Read every shard and check its checksum, shapes and finiteness; raises naming the
        first bad file."""
        for i in range(len(self.manifest.shards)):
            self.load_shard(i, verify=True)

    # -- random access -------------------------------------------------------------------------

    def _take(self, key: str, index: Tensor | Sequence[int]) -> Tensor:
        rows = np.asarray(index, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise SaescopeError(f"row index out of range: the cache has {len(self):,} rows")
        shard_of = np.searchsorted(self._offsets, rows, side="right") - 1
        parts: list[Tensor] = []
        order: list[np.ndarray] = []
        for shard in np.unique(shard_of):
            where = np.nonzero(shard_of == shard)[0]
            local = rows[where] - self._offsets[shard]
            sort = np.argsort(local, kind="stable")
            if shard not in self._views:
                info = self.manifest.shards[shard]
                self._views[shard] = ShardView(self._path(shard), info, self.manifest.sites)
            taken = self._views[shard].take(key, local[sort])
            parts.append(taken)
            order.append(where[sort])
        if not parts:
            return torch.empty(0)
        out = torch.cat(parts)
        return out[torch.from_numpy(np.argsort(np.concatenate(order), kind="stable"))]

    def rows(self, index: Tensor | Sequence[int], site: str | None = None) -> Tensor:
        """Activations (len(index), d) at ``site``, in the order asked, in the cache dtype."""
        return self._take(acts_key(self.site(site)), index)

    def provenance(self, index: Tensor | Sequence[int]) -> dict[str, Tensor]:
        """Token id, context index and position of each row."""
        return {key: self._take(key, index) for key in PROVENANCE}

    # -- streaming -------------------------------------------------------------------------------

    def batches(
        self,
        batch_size: int,
        site: str | None = None,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epochs: int | None = 1,
        buffer_shards: int = 4,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        dtype: torch.dtype = torch.float32,
        verify: bool = True,
        shards: Sequence[int] | None = None,
        outliers: OutlierPolicy | OutlierRule | None = None,
    ) -> Iterator[Tensor]:
        """Yield (batch_size, d) batches; each row once per epoch (``epochs=None``: forever).

        Shuffling reads shards in a seeded random order and permutes rows within a window of
        ``buffer_shards`` shards, so memory stays at about (buffer_shards + 1) shards whatever
        the cache size. The next shard is read and checked in a background thread. Under data
        parallelism each rank reads a disjoint share of the shards (``rank``, ``world_size``).
        ``shards`` restricts reading to those shard indices (e.g. to hold some out).
        ``outliers`` (None: rows as captured) is applied to each shard's rows before they are
        shuffled and batched, so excluding rows still yields full batches.
        """
        site = self.site(site)
        rule = self.outlier_rule(outliers, site) if outliers is not None else None
        if batch_size < 1 or buffer_shards < 1:
            raise SaescopeError("batch_size and buffer_shards must be >= 1")
        generator = torch.Generator().manual_seed(seed)
        epoch = 0
        while epochs is None or epoch < epochs:
            pool = list(range(len(self.manifest.shards))) if shards is None else list(shards)
            perm = torch.randperm(len(pool), generator=generator) if shuffle else range(len(pool))
            order = [pool[int(i)] for i in perm]
            mine = order[rank::world_size]
            carry = torch.empty(0, self.d(site), dtype=dtype)
            loaded = self._prefetch(mine, site, dtype, verify, rule)
            for start in range(0, len(mine), buffer_shards):
                window = [carry] + [next(loaded) for _ in mine[start : start + buffer_shards]]
                rows = torch.cat(window)
                if shuffle:
                    rows = rows[torch.randperm(len(rows), generator=generator)]
                full = len(rows) // batch_size * batch_size
                yield from rows[:full].split(batch_size)
                carry = rows[full:]
            if len(carry) and not drop_last:
                yield carry
            epoch += 1

    def _prefetch(
        self,
        shards: list[int],
        site: str,
        dtype: torch.dtype,
        verify: bool,
        rule: OutlierRule | None,
    ) -> Iterator[Tensor]:
        def load(i: int) -> Tensor:
            tensors = self.load_shard(i, verify=verify)
            rows = tensors[acts_key(site)].to(dtype)
            return rule.apply(rows, self.shard_norms(tensors, site)) if rule else rows

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future[Tensor] | None = pool.submit(load, shards[0]) if shards else None
            for nxt in [*shards[1:], None]:
                assert pending is not None
                current = pending.result()
                pending = pool.submit(load, nxt) if nxt is not None else None
                yield current
