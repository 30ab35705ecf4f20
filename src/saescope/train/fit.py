"""``fit``: drive one or more SAETrainers over one pass of batches, with logs and checkpoints.

Run directory, per SAE ``<run>/<name>/``: ``config.json`` (SAE and training config),
``metrics.jsonl``, ``checkpoint/`` (replaced atomically every ``checkpoint_every`` steps) and,
at the end, the SAE itself (``cfg.json``, ``sae_weights.safetensors``, ``sparsity.safetensors``).
Resuming skips the batches already trained on, so a deterministic batch iterator (the cache's,
with its seed) gives the same final weights as an uninterrupted run.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from saescope._files import strict_json
from saescope._progress import progress_bar
from saescope.errors import SaescopeError
from saescope.sae import SAE, save_sae
from saescope.train import checkpoint as ckpt
from saescope.train.loggers import Tracker, make_tracker
from saescope.train.trainer import SAETrainer

log = logging.getLogger(__name__)


def fit(
    trainers: list[SAETrainer],
    batches: Iterable[Tensor],
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    log_to: Sequence[str] = (),
) -> list[SAE]:
    """Train every SAE on the same batches; returns the exported SAEs (raw-input scale).

    ``log_to`` names optional trackers (``wandb``, ``tensorboard``) fed beside metrics.jsonl.
    """
    _check_sweep(trainers)
    cfg, rank = trainers[0].cfg, trainers[0].rank
    root = Path(run_dir) if run_dir is not None else None
    start = _restore(trainers, root) if resume and root is not None else 0
    if root is not None and not resume:
        _start_run(trainers, root, write=rank.rank == 0)
    if rank.rank != 0:
        root, progress = None, False  # under torchrun only rank 0 writes and draws
    trackers = [make_tracker(kind, root, _configs(trainers)) for kind in log_to] if root else []
    stream = iter(batches)
    if start:
        log.info("resuming at step %d: skipping %d batches already trained on", start, start)
        stream = itertools.islice(stream, start, None)
    else:
        stream = _initialise(trainers, stream, -(-cfg.init_rows // rank.world_size))
    with progress_bar("tok", disable=not progress) as bar:
        world = rank.world_size  # the bar and the logged rate count every rank's tokens
        task = bar.add_task(
            "train",
            total=cfg.steps * cfg.batch_size * world,
            completed=start * cfg.batch_size * world,
        )
        last, last_step = time.perf_counter(), start
        for step, x in zip(range(start, cfg.steps), stream, strict=False):
            if len(x) != cfg.batch_size:
                continue  # a ragged last batch of an epoch: skip rather than bias the step
            metrics = [t.step(x) for t in trainers]
            bar.update(task, advance=len(x) * world, description=_describe(metrics[0]))
            if root is not None and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
                now = time.perf_counter()
                rate = (step + 1 - last_step) * cfg.batch_size * world / (now - last)
                _log(trainers, metrics, root, rate, trackers)
                last, last_step = now, step + 1
            if root is not None and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                _checkpoint(trainers, root)
    for tracker in trackers:
        tracker.close()
    done = trainers[0].step_count
    if done < cfg.steps:
        log.warning("the data ran out after %d of %d steps", done, cfg.steps)
    saes = [t.export() for t in trainers]
    if root is not None:
        _checkpoint(trainers, root)  # the final state: --resume of a finished run is a no-op
        for trainer, sae in zip(trainers, saes, strict=True):
            save_sae(sae, root / trainer.name, trainer.log10_density())
    return saes


def _check_sweep(trainers: list[SAETrainer]) -> None:
    if not trainers:
        raise SaescopeError("fit needs at least one SAE")
    names = [t.name for t in trainers]
    if len(set(names)) != len(names):
        raise SaescopeError(f"SAE names in one run must differ, got {names}")
    shapes = {(t.cfg.batch_size, t.cfg.tokens, t.sae.cfg.d_in) for t in trainers}
    if len(shapes) > 1:
        raise SaescopeError(
            f"SAEs trained in one pass must share batch_size, tokens and d_in; got {shapes}"
        )


def _initialise(
    trainers: list[SAETrainer], stream: Iterator[Tensor], rows: int
) -> Iterator[Tensor]:
    """Peek at the first ``rows`` rows to initialise every trainer; they are trained on too."""
    head: list[Tensor] = []
    while sum(map(len, head)) < rows:
        batch = next(stream, None)
        if batch is None:
            break
        if not torch.isfinite(batch).all():
            raise SaescopeError("the activations contain NaN or inf; check the cache or model")
        head.append(batch)
    if not head:
        raise SaescopeError("no batches to train on: the activation source is empty")
    sample = torch.cat(head)[:rows].float()
    if sample.shape[1] != trainers[0].sae.cfg.d_in:
        raise SaescopeError(
            f"the SAE has d_in={trainers[0].sae.cfg.d_in}, the activations have "
            f"d={sample.shape[1]}; was the SAE configured for another site?"
        )
    for trainer in trainers:
        trainer.initialise(sample)
    return itertools.chain(head, stream)


def _describe(m: dict[str, float]) -> str:
    return f"fvu {m['fvu']:.3f} L0 {m['l0']:.0f} dead {m['dead']:.0%}"


def _start_run(trainers: list[SAETrainer], root: Path, write: bool) -> None:
    for trainer in trainers:
        directory = root / trainer.name
        if (directory / "checkpoint" / ckpt.STATE).exists():
            raise SaescopeError(
                f"{directory} holds a checkpoint; pass --resume to continue it, or choose "
                "another output directory"
            )
        if not write:
            continue
        directory.mkdir(parents=True, exist_ok=True)
        config = _configs([trainer])[trainer.name]
        (directory / "config.json").write_text(strict_json(config))
        (directory / "metrics.jsonl").write_text("")


def _configs(trainers: list[SAETrainer]) -> dict[str, dict]:
    return {t.name: {"sae": t.sae.cfg.to_dict(), "train": t.cfg.to_dict()} for t in trainers}


def _log(
    trainers: list[SAETrainer],
    metrics: list[dict[str, float]],
    root: Path,
    tokens_per_s: float,
    trackers: list[Tracker],
) -> None:
    for trainer, m in zip(trainers, metrics, strict=True):
        record = {
            "step": trainer.step_count,
            "tokens": trainer.tracker.tokens,
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "tokens_per_s": tokens_per_s,
            **m,
        }
        with (root / trainer.name / "metrics.jsonl").open("a") as f:
            f.write(strict_json(record, indent=None) + "\n")
        for tracker in trackers:
            tracker.log(trainer.name, trainer.step_count, record)


def _checkpoint(trainers: list[SAETrainer], root: Path) -> None:
    for trainer in trainers:
        tensors, state = trainer.checkpoint_state()
        ckpt.save_checkpoint(root / trainer.name / "checkpoint", tensors, state)


def _restore(trainers: list[SAETrainer], root: Path) -> int:
    steps = set()
    for trainer in trainers:
        found = ckpt.load_checkpoint(root / trainer.name / "checkpoint")
        if found is None:
            raise SaescopeError(f"nothing to resume: {root / trainer.name} holds no checkpoint")
        trainer.restore(*found)
        steps.add(trainer.step_count)
    if len(steps) != 1:
        raise SaescopeError(f"the SAEs' checkpoints are at different steps {sorted(steps)}")
    return steps.pop()
