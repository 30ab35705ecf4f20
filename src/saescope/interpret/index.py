"""Build a feature index: one streaming pass over activations, then one SQLite file.

    state = FeatureCollector(...)             # bounded: features x (top + samples) windows
    for batch in batches: state.update(batch, source.encode(batch.acts))
    write: statistics + examples + logit attribution + neighbours (+ neurons) -> INDEX

The pass checkpoints its state to ``INDEX.partial/`` every minute; ``resume=True`` continues
from there (the index records what it was built from and refuses to continue another build).
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
from safetensors.torch import load_file, save_file
from torch import Tensor

from saescope._files import strict_json
from saescope._progress import progress_bar
from saescope.errors import SaescopeError
from saescope.interpret.collect import Batch, CollectConfig, FeatureCollector
from saescope.interpret.sources import FeatureSource
from saescope.interpret.store import FORMAT
from saescope.interpret.write import write_index
from saescope.models import LanguageModel

log = logging.getLogger(__name__)


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
    meta = meta | {
        "format": FORMAT,
        "source": {"kind": source.kind, "identity": source.identity, "path": source.path},
        "site": source.site,
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
            collector.update(batch, source.encode(batch.acts.to(_device(source))))
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


def save_state(out: Path, collector: FeatureCollector, meta: dict[str, Any]) -> None:
    """Write the pass's state atomically: a killed process leaves the previous one intact."""
    folder = partial_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "state.tmp"
    save_file({k: v.contiguous() for k, v in collector.state().items()}, str(tmp))
    (folder / "meta.json.tmp").write_text(strict_json(meta))
    tmp.replace(folder / "state.safetensors")
    (folder / "meta.json.tmp").replace(folder / "meta.json")


def load_state(out: Path, meta: dict[str, Any]) -> tuple[dict[str, Tensor], int] | None:
    """The saved state of an interrupted build of ``out`` and its cursor, or None if there is
    none; an error if it was building something else."""
    folder = partial_dir(out)
    if not (folder / "meta.json").is_file():
        return None
    saved = json.loads((folder / "meta.json").read_text())
    for key, value in meta.items():
        if saved.get(key) != json.loads(strict_json(value)):
            raise SaescopeError(
                f"the interrupted build in {folder} was made with {key}={saved.get(key)!r}, "
                f"this one has {value!r}; delete {folder} to start over"
            )
    return load_file(str(folder / "state.safetensors")), int(saved["cursor"])
