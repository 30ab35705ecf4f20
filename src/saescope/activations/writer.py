"""Capturing a model's activations at one or more sites into an on-disk cache.

The corpus is packed into contexts in a fixed order; under ``torchrun`` rank r takes contexts
r, r + world, ... Each rank accumulates whole contexts until a shard holds about ``shard_rows``
rows, writes it atomically, then records it in its journal (the manifest itself when running
alone). ``resume=True`` skips the contexts of finished shards, so a killed capture loses at most
one shard of work. A shard cut at the row target mid-context records only the contexts it holds
whole; resuming with a larger target finishes that context from the row after the last one kept.
One writer at a time: each rank holds a lock in the cache directory while it writes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from saescope import __version__
from saescope._dist import Rank
from saescope._files import LOCK, exclusive
from saescope._progress import progress_bar
from saescope.activations.cache import ActivationCache, open_activations
from saescope.activations.extract import check_context_size, site_rows
from saescope.activations.manifest import (
    MANIFEST,
    Manifest,
    ShardInfo,
    read_manifest,
    save_manifest,
)
from saescope.activations.outliers import row_norms
from saescope.activations.shards import acts_key, norms_key, read_header, write_shard
from saescope.data import ContextConfig, Corpus, load_corpus, pack_contexts
from saescope.errors import SaescopeError
from saescope.models import LanguageModel, Site
from saescope.models.loading import resolve_dtype

log = logging.getLogger(__name__)


def _journal(root: Path, rank: Rank) -> Path:
    """Where a rank records its finished shards: the manifest itself when running alone."""
    return root / (MANIFEST if rank.world_size == 1 else f"manifest.rank-{rank.rank}.json")


def capture(
    model: LanguageModel,
    sites: Sequence[str | Site],
    out: str | Path,
    tokens: int,
    corpus: Corpus | None = None,
    context: ContextConfig = ContextConfig(),
    dtype: str | torch.dtype | None = None,
    batch_size: int = 16,
    shard_rows: int = 65_536,
    resume: bool = False,
    progress: bool = True,
) -> ActivationCache:
    """Capture ``tokens`` activation rows at each of ``sites`` into the cache directory ``out``.

    ``dtype`` is the storage dtype (default: the model's). Rows are token positions that survive
    the context config's exclusion of special tokens. Returns the opened cache. A failure to
    write (full disk, read-only directory) raises SaescopeError naming the path; no temporary
    file is left behind.
    """
    parsed = sorted({model.site(s) for s in sites})
    if not parsed:
        raise SaescopeError("capture needs at least one --site")
    for name, value in (("tokens", tokens), ("batch_size", batch_size), ("shard_rows", shard_rows)):
        if value < 1:
            raise SaescopeError(f"{name} must be >= 1, got {value}")
    check_context_size(model, context.context_size)  # before any directory is made
    corpus = corpus if corpus is not None else load_corpus()
    store_dtype = model.dtype if dtype is None else resolve_dtype(dtype, torch.device("cpu"))
    root = Path(out)
    rank = Rank.current()
    fresh = Manifest(
        model=model.name,
        model_type=model.hf.config.model_type,
        sites={s.name: model.site_dim(s) for s in parsed},
        dtype=str(store_dtype).removeprefix("torch."),
        context=context.to_dict(),
        dataset=corpus.name,
        text_field=corpus.text_field,
        tokens=tokens,
        world_size=rank.world_size,
        saescope_version=__version__,
    )
    job = _Job(
        model,
        parsed,
        root,
        corpus,
        context,
        store_dtype,
        batch_size,
        shard_rows,
        rank,
        target=rank.share(tokens),
        progress=progress,
    )
    try:
        with _locked(root, rank):
            _capture_rank(job, _start_journal(root, rank, fresh, resume))
            _finish(root, rank)
    except OSError as err:
        where = err.filename or root
        raise SaescopeError(
            f"cannot write the cache at {where}: {err.strerror or err}; free space, fix the "
            "permissions or choose another --out, then run the same command again"
        ) from err
    return open_activations(root)


@contextlib.contextmanager
def _locked(root: Path, rank: Rank) -> Iterator[None]:
    """Create ``root`` (refusing a non-cache directory first) and hold this rank's lock in it."""
    if root.exists() and not root.is_dir():
        raise SaescopeError(f"--out {root} is a file; expected a cache directory")
    if root.exists() and not (root / MANIFEST).exists():
        # Under torchrun another rank may be creating this cache right now: only names no
        # capture writes make the directory someone else's.
        foreign = sorted(p.name for p in root.iterdir() if not _ours(p.name))
        if foreign:
            raise SaescopeError(
                f"{root} exists and holds files that are not a saescope cache "
                f"({', '.join(foreign[:3])}); choose another --out or empty it"
            )
    root.mkdir(parents=True, exist_ok=True)
    name = LOCK if rank.rank == 0 else f"{LOCK}.rank-{rank.rank}"
    with exclusive(root, "the cache", name):
        yield


def _ours(name: str) -> bool:
    """Whether a capture (any rank) writes a top-level entry called ``name``."""
    return (
        name == "shards"
        or name.startswith(LOCK)
        or (name.startswith("manifest") and name.endswith(".json"))
        or name.startswith(".manifest")  # write_atomic's temporary file
    )


def _start_journal(root: Path, rank: Rank, fresh: Manifest, resume: bool) -> Manifest:
    path = _journal(root, rank)
    if path.exists() and not read_manifest(path).shards:
        # A capture that failed before its first shard left nothing worth keeping: the same
        # command run again (with or without --resume, same settings or not) starts afresh.
        log.info("%s holds an empty capture; starting afresh", root)
    elif path.exists():
        if not resume:
            raise SaescopeError(
                f"{root} already holds a capture; pass --resume to continue it, or choose "
                "another --out"
            )
        old = read_manifest(path)
        if old.identity() != fresh.identity():
            diff = {
                k: (v, fresh.identity()[k])
                for k, v in old.identity().items()
                if fresh.identity()[k] != v
            }
            raise SaescopeError(
                f"cannot resume {root}: it was captured with different settings "
                f"(field: (cache, now)) {diff}; use the original arguments or another --out"
            )
        log.info("resuming %s: %d shards, %s rows done", root, len(old.shards), f"{old.rows:,}")
        return replace(old, tokens=fresh.tokens, complete=False)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    save_manifest(path, fresh)
    return fresh


def _contexts(
    corpus: Corpus, model: LanguageModel, context: ContextConfig, rank: Rank, skip: int
) -> Iterator[tuple[int, Tensor]]:
    """(global context index, token ids) for this rank, after the ``skip`` it already did."""
    stream = enumerate(pack_contexts(corpus, model.tokenizer, context))
    mine = itertools.islice(stream, rank.rank, None, rank.world_size)
    return itertools.islice(mine, skip, None)


@dataclass(frozen=True)
class _Job:
    """One rank's capture, fully resolved."""

    model: LanguageModel
    sites: list[Site]
    root: Path
    corpus: Corpus
    context: ContextConfig
    store_dtype: torch.dtype
    batch_size: int
    shard_rows: int
    rank: Rank
    target: int
    """Rows this rank writes."""
    progress: bool


def _capture_rank(job: _Job, journal: Manifest) -> None:
    model, sites, root, rank, target = job.model, job.sites, job.root, job.rank, job.target
    corpus, context, batch_size, store_dtype = (
        job.corpus,
        job.context,
        job.batch_size,
        job.store_dtype,
    )
    done_rows = journal.rows
    done_contexts = journal.shards[-1].contexts_done if journal.shards else 0
    contexts = _contexts(corpus, model, context, rank, done_contexts)
    skip_rows = _rows_already_kept(root, rank, journal, done_contexts)
    pending: list[dict[str, Tensor]] = []
    pending_rows = 0
    with progress_bar("tok", disable=not job.progress or rank.rank != 0) as bar:
        task = bar.add_task("capture", total=target, completed=done_rows)
        while done_rows + pending_rows < target:
            batch = list(itertools.islice(contexts, batch_size))
            if not batch:
                journal = replace(journal, notes=[*journal.notes, "corpus exhausted"])
                log.warning(
                    "corpus %r ran out after %s tokens (asked for %s)",
                    corpus.name,
                    f"{done_rows + pending_rows:,}",
                    f"{target:,}",
                )
                break
            rows = _forward(model, sites, batch, context.exclude_special, store_dtype)
            if skip_rows:  # the start of the first context is in the last shard already
                rows, skip_rows = {k: v[skip_rows:] for k, v in rows.items()}, 0
            pending.append(rows)
            pending_rows += len(rows["tokens"])
            done_contexts += len(batch)
            bar.update(task, completed=min(done_rows + pending_rows, target))
            if pending_rows >= job.shard_rows or done_rows + pending_rows >= target:
                journal = _write_pending(job, journal, pending, done_rows, done_contexts)
                done_rows, pending, pending_rows = journal.rows, [], 0
        if pending:
            journal = _write_pending(job, journal, pending, done_rows, done_contexts)
    if journal.rows == 0:
        raise SaescopeError(
            f"corpus {corpus.name!r} yielded no tokens: it is shorter than one context of "
            f"{context.context_size} tokens, or every token is special"
        )
    save_manifest(_journal(root, rank), replace(journal, complete=True))


def _forward(
    model: LanguageModel,
    sites: list[Site],
    batch: list[tuple[int, Tensor]],
    exclude_special: bool,
    store_dtype: torch.dtype,
) -> dict[str, Tensor]:
    """One batch of (global context index, token ids) as the shard's named columns."""
    index = torch.tensor([i for i, _ in batch])  # (B,)
    input_ids = torch.stack([ids for _, ids in batch])  # (B, T)
    got = site_rows(model, input_ids, sites, exclude_special, store_dtype, "cpu")
    rows = {acts_key(s.name): got.acts[s.name] for s in sites}  # each (N, d)
    # The norms of the stored (rounded) values, so a reader computing them gets the same.
    rows |= {norms_key(s.name): row_norms(got.acts[s.name]) for s in sites}  # each (N,)
    rows["tokens"] = got.tokens.int()
    rows["context"] = index[got.context]
    rows["position"] = got.position.int()
    return rows


def _write_pending(
    job: _Job,
    journal: Manifest,
    pending: list[dict[str, Tensor]],
    done_rows: int,
    done_contexts: int,
) -> Manifest:
    """Write the pending rows, cut at the target, as one shard.

    If the cut falls inside a context, that context and those after it are not done: the shard
    records as done only the contexts before the first row it drops, and a resume with a larger
    target takes up the cut context again (``_rows_already_kept`` skips its rows written here).
    """
    whole = {key: torch.cat([p[key] for p in pending]) for key in pending[0]}
    limit = job.target - done_rows
    if len(whole["tokens"]) > limit:
        first_dropped = int(whole["context"][limit])  # global context index
        done_contexts = _local(first_dropped, job.rank)
        whole = {key: value[:limit] for key, value in whole.items()}
    return _write(job.root, job.rank, journal, whole, done_contexts)


def _local(context: int, rank: Rank) -> int:
    """This rank's count of contexts before global context ``context`` (one of its own)."""
    return (context - rank.rank) // rank.world_size


def _rows_already_kept(root: Path, rank: Rank, journal: Manifest, done_contexts: int) -> int:
    """Rows of the next context to capture that the last shard holds (it was cut mid-context)."""
    mine = [s for s in journal.shards if s.rank == rank.rank]
    if not mine:
        return 0
    path = root / mine[-1].file
    header, data_start = read_header(path)
    meta = header["context"]
    start, end = meta["data_offsets"]
    with path.open("rb") as handle:
        handle.seek(data_start + start)
        contexts = torch.frombuffer(bytearray(handle.read(end - start)), dtype=torch.int64)
    following = rank.rank + done_contexts * rank.world_size
    return int((contexts == following).sum())


def _write(
    root: Path, rank: Rank, journal: Manifest, shard: dict[str, Tensor], contexts_done: int
) -> Manifest:
    index = sum(1 for s in journal.shards if s.rank == rank.rank)
    file = f"shards/r{rank.rank:02d}-{index:05d}.safetensors"
    size, digest = write_shard(root / file, shard)
    info = ShardInfo(
        file=file,
        rank=rank.rank,
        index=index,
        rows=len(shard["tokens"]),
        contexts_done=contexts_done,
        bytes=size,
        sha256=digest,
    )
    journal = journal.with_shard(info)
    save_manifest(_journal(root, rank), journal)
    return journal


def _finish(root: Path, rank: Rank) -> None:
    """Under torchrun, rank 0 merges every rank's journal into the manifest once all are done."""
    if rank.world_size == 1:
        return
    rank.barrier()
    if rank.rank == 0:
        parts = [
            read_manifest(_journal(root, Rank(r, rank.world_size))) for r in range(rank.world_size)
        ]
        merged = replace(
            parts[0],
            shards=tuple(s for p in parts for s in p.shards),
            complete=all(p.complete for p in parts),
            notes=sorted({n for p in parts for n in p.notes}),
        )
        save_manifest(root / MANIFEST, merged)
    rank.barrier()
