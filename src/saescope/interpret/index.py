"""Build a feature index: one streaming pass over activations, then one SQLite file.

    state = FeatureCollector(...)             # bounded: features x (top + samples) windows
    for batch in batches: state.update(batch, source.encode(batch.acts))
    write: statistics + examples + logit attribution + neighbours (+ neurons) -> INDEX

The pass checkpoints its state to ``INDEX.partial/state.safetensors`` every minute, the tensors
and the cursor (in the file's metadata) in one atomic write; ``resume=True`` continues from there
(the state records what it was built from and refuses to continue another build). Every batch is
checked finite before it is encoded: a NaN or inf stops the build, naming its context and
position, before the index is written.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor

from saescope._files import exclusive, strict_json, write_atomic
from saescope._finite import nonfinite_rows
from saescope._progress import progress_bar
from saescope.errors import SaescopeError
from saescope.interpret.collect import Batch, CollectConfig, FeatureCollector
from saescope.interpret.sources import FeatureSource
from saescope.interpret.store import FORMAT
from saescope.interpret.write import write_index
from saescope.models import LanguageModel

log = logging.getLogger(__name__)


STATE_FILE = "state.safetensors"
"""In ``partial_dir(out)``: the collector's tensors, with the build's JSON meta and cursor under
the ``saescope.index_state`` metadata key."""
STATE_KEY = "saescope.index_state"


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def build_index(
    source: FeatureSource,
    model: LanguageModel,
    batches: Callable[[int], Iterable[tuple[Batch, int]]],
    out: str | Path,
    tokens: int,
    meta: dict[str, Any],
    cfg: CollectConfig = CollectConfig(),
    *,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_seconds: float = 60.0,
    progress: bool = True,
) -> Path:
    """Stream ``batches(cursor)`` until ``tokens`` rows have been read, then write ``out``.

    ``meta`` says what the data is (model, site, dataset, context policy); it is stored in the
    index and must match when a build resumes.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise SaescopeError(f"{out} exists; pass --overwrite to rebuild it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out.parent, f"the index {out.name} in", name=f".{out.name}.lock"):
        return _build(
            source, model, batches, out, tokens, meta, cfg, resume, checkpoint_seconds, progress
        )


def _build(
    source: FeatureSource,
    model: LanguageModel,
    batches: Callable[[int], Iterable[tuple[Batch, int]]],
    out: Path,
    tokens: int,
    meta: dict[str, Any],
    cfg: CollectConfig,
    resume: bool,
    checkpoint_seconds: float,
    progress: bool,
) -> Path:
    meta = meta | {
        "format": FORMAT,
        "source": {"kind": source.kind, "identity": source.identity, "path": source.path},
        "site": source.site,
        **({"site_out": source.site_out} if source.site_out != source.site else {}),
        "collect": asdict(cfg),
        "tokens_requested": tokens,
    }
    collector = FeatureCollector(source.n_features, cfg)
    start = 0
    saved = load_state(out, meta)
    if saved is not None and not resume:
        raise SaescopeError(
            f"an interrupted build of {out} is in {partial_dir(out)}: pass --resume to continue "
            "it, or delete that folder to start over"
        )
    if saved is not None:
        collector.load_state(saved[0])
        start = saved[1]
        log.info("resuming the index build at %s tokens", f"{collector.tokens_seen:,}")
    last_save = time.monotonic()
    with progress_bar("tok", disable=not progress) as bar:
        task = bar.add_task("index", total=tokens, completed=collector.tokens_seen)
        for batch, cursor in batches(start):
            if collector.tokens_seen >= tokens:
                break
            acts = batch.acts.to(_device(source))  # (N, d)
            check_finite(batch, acts, meta)
            collector.update(batch, source.encode(acts))
            bar.update(task, completed=min(collector.tokens_seen, tokens))
            if time.monotonic() - last_save > checkpoint_seconds:
                save_state(out, collector, meta | {"cursor": cursor})
                last_save = time.monotonic()
    if collector.tokens_seen == 0:
        raise SaescopeError(
            "no activations reached the index: the dataset or cache is empty (or every token "
            "was excluded as special)"
        )
    if collector.tokens_seen < tokens:
        log.info("the data ran out after %s of %s tokens", f"{collector.tokens_seen:,}", tokens)
    write_index(out, collector, source, model, meta | {"tokens": collector.tokens_seen})
    shutil.rmtree(partial_dir(out), ignore_errors=True)
    return out


def _device(source: FeatureSource) -> torch.device:
    return source.sae.W_enc.device if source.sae is not None else torch.device("cpu")


def check_finite(batch: Batch, acts: Tensor, meta: dict[str, Any]) -> None:
    """Refuse a batch with a NaN or infinite activation, naming the first one's context and
    position: an SAE encodes NaN into garbage (or nothing) and the index would look fine."""
    bad_rows = nonfinite_rows(acts)
    if bad_rows is None:
        return
    row = int(torch.nonzero(bad_rows)[0])
    bad = int(bad_rows.sum())
    context = int(batch.contexts[batch.row_context[row]])
    position = int(batch.row_position[row])
    value = float(acts[row][~torch.isfinite(acts[row])][0])
    origin = meta.get("activations") or f"the model {meta.get('model')} run live"
    hint = (
        "recapture that cache, or index the model live"
        if meta.get("activations")
        else "the model overflows in its dtype there: run it in float32 (--dtype fp32)"
    )
    raise SaescopeError(
        f"activation {value} at {meta.get('site')}, context {context} position {position} of "
        f"{origin} ({bad} non-finite row(s) in this batch of {len(acts)}); no index was "
        f"written: {hint}"
    )


def save_state(out: Path, collector: FeatureCollector, meta: dict[str, Any]) -> None:
    """Write the pass's state (tensors, and ``meta`` with the cursor) as one file atomically:
    a killed process leaves the previous state whole, never new counts with an old cursor."""
    folder = partial_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in collector.state().items()}
    data = save(tensors, metadata={STATE_KEY: strict_json(meta, indent=None)})
    write_atomic(folder / STATE_FILE, data)


def load_state(out: Path, meta: dict[str, Any]) -> tuple[dict[str, Tensor], int] | None:
    """The saved state of an interrupted build of ``out`` and its cursor, or None if there is
    none; an error if it was building something else or cannot be read."""
    folder = partial_dir(out)
    path = folder / STATE_FILE
    if (folder / "meta.json").exists():
        # saescope before index format 2 wrote the cursor beside the tensors with two renames,
        # so the two files may be from different checkpoints: nothing can tell.
        raise SaescopeError(
            f"{folder} holds an interrupted build in the old two-file layout (meta.json beside "
            f"{STATE_FILE}), whose parts may disagree; delete {folder} and build again"
        )
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            saved = json.loads((f.metadata() or {})[STATE_KEY])
        state = load_file(str(path))
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise SaescopeError(
            f"{path} is not a readable index-build state ({e}); delete {folder} to start over"
        ) from e
    for key, value in meta.items():
        if saved.get(key) != json.loads(strict_json(value)):
            raise SaescopeError(
                f"the interrupted build in {folder} was made with {key}={saved.get(key)!r}, "
                f"this one has {value!r}; delete {folder} to start over"
            )
    return state, int(saved["cursor"])
