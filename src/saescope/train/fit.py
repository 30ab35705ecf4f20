"""``fit``: drive one or more SAETrainers over one pass of batches, with logs and checkpoints.

Run directory, per SAE ``<run>/<name>/``: ``config.json`` (SAE and training config),
``metrics.jsonl``, ``checkpoint/`` (replaced atomically every ``checkpoint_every`` steps) and,
at the end, the SAE itself (``cfg.json``, ``sae_weights.safetensors``, ``sparsity.safetensors``).

A step is one batch trained on; a batch of the wrong size (an epoch's ragged last) is skipped
without using up a step. The checkpoint stores both the step and how many batches were drawn
from the stream, so resuming skips exactly the batches seen before (trained on or skipped), and a
deterministic batch iterator (the cache's, with its seed) gives the same final weights as an
uninterrupted run. A resume must use the settings the run was started with (see
``FREE_ON_RESUME``), and drops the metrics logged after its checkpoint.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saescope._files import exclusive, strict_json, write_atomic
from saescope._progress import progress_bar
from saescope.errors import SaescopeError
from saescope.sae import SAE, save_sae
from saescope.train import checkpoint as ckpt
from saescope.train.loggers import Tracker, make_tracker
from saescope.train.trainer import SAETrainer

log = logging.getLogger(__name__)

FREE_ON_RESUME = frozenset({"train.checkpoint_every", "train.log_every"})
"""config.json fields a resume may change: they decide when state is written, not what it is.
Every other field (the SAE's, the seed, lr, tokens, batch size, ...) must match the saved one."""


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
    root = Path(run_dir) if run_dir is not None else None
    if root is None or trainers[0].rank.rank != 0:
        return _fit(trainers, batches, root, resume, progress, log_to)
    root.mkdir(parents=True, exist_ok=True)
    with exclusive(root, "the run directory"):  # a second writer (e.g. two --resume) is refused
        return _fit(trainers, batches, root, resume, progress, log_to)


def _fit(
    trainers: list[SAETrainer],
    batches: Iterable[Tensor],
    root: Path | None,
    resume: bool,
    progress: bool,
    log_to: Sequence[str],
) -> list[SAE]:
    cfg, rank = trainers[0].cfg, trainers[0].rank
    resumed, drawn = resume and root is not None, 0
    if root is not None and resume:
        drawn = _resume(trainers, root, write=rank.rank == 0)
    elif root is not None:
        _start_run(trainers, root, write=rank.rank == 0)
    if rank.rank != 0:
        root, progress = None, False  # under torchrun only rank 0 writes and draws
    trackers = [make_tracker(kind, root, _configs(trainers)) for kind in log_to] if root else []
    start = trainers[0].step_count
    stream = iter(batches)
    if resumed:
        log.info("resuming at step %d: skipping the %d batches drawn before", start, drawn)
        stream = itertools.islice(stream, drawn, None)
    else:
        stream = _initialise(trainers, stream, -(-cfg.init_rows // rank.world_size))
    with progress_bar("tok", disable=not progress) as bar:
        world = rank.world_size  # the bar and the logged rate count every rank's tokens
        task = bar.add_task(
            "train",
            total=cfg.steps * cfg.batch_size * world,
            completed=start * cfg.batch_size * world,
        )

        def advance(metrics: dict[str, float]) -> None:
            bar.update(task, advance=cfg.batch_size * world, description=_describe(metrics))

        drawn = _train(trainers, stream, drawn, root, trackers, advance)
    for tracker in trackers:
        tracker.close()
    done = trainers[0].step_count
    if done < cfg.steps:
        log.warning("the data ran out after %d of %d steps", done, cfg.steps)
    for trainer in trainers if rank.rank == 0 else []:
        verdict = trainer.undertrained()
        if verdict is not None:
            log.warning("%s", verdict.message(trainer.name, trainer.tracker.tokens))
    saes = [t.export() for t in trainers]
    if root is not None:
        _checkpoint(trainers, root, drawn)  # the final state: --resume of a finished run is a no-op
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


def _train(
    trainers: list[SAETrainer],
    stream: Iterator[Tensor],
    drawn: int,
    root: Path | None,
    trackers: list[Tracker],
    advance: Callable[[dict[str, float]], None],
) -> int:
    """Step until ``cfg.steps`` or the end of ``stream``; returns the batches drawn in all."""
    cfg, world = trainers[0].cfg, trainers[0].rank.world_size
    last, last_step = time.perf_counter(), trainers[0].step_count
    while trainers[0].step_count < cfg.steps:  # checked first: never draw a batch not used
        x = next(stream, None)
        if x is None:
            break
        drawn += 1
        if len(x) != cfg.batch_size:
            log.debug("skipping a batch of %d rows (batch size %d)", len(x), cfg.batch_size)
            continue  # a ragged batch (an epoch's last): skipped rather than bias the step
        metrics = [t.step(x) for t in trainers]
        advance(metrics[0])
        step = trainers[0].step_count
        if root is None:
            continue
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            rate = (step - last_step) * cfg.batch_size * world / (now - last)
            _log(trainers, metrics, root, rate, trackers)
            last, last_step = now, step
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
            _checkpoint(trainers, root, drawn)  # (the last step's is fit's final checkpoint)
    return drawn


def _describe(m: dict[str, float]) -> str:
    return f"fvu {m['fvu']:.3f} L0 {m['l0']:.0f} dead {m['dead']:.0%}"


def _start_run(trainers: list[SAETrainer], root: Path, write: bool) -> None:
    for trainer in trainers:
        directory = root / trainer.name
        if ckpt.has_checkpoint(directory / "checkpoint"):
            raise SaescopeError(
                f"{directory} holds a checkpoint; pass --resume to continue it, or choose "
                "another output directory"
            )
        if not write:
            continue
        directory.mkdir(parents=True, exist_ok=True)
        config = _configs([trainer])[trainer.name]
        write_atomic(directory / "config.json", strict_json(config).encode())
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


def _checkpoint(trainers: list[SAETrainer], root: Path, drawn: int) -> None:
    for trainer in trainers:
        tensors, state = trainer.checkpoint_state()
        state = {**state, "batches": drawn}  # the stream position, ragged batches included
        ckpt.save_checkpoint(root / trainer.name / "checkpoint", tensors, state)


def _resume(trainers: list[SAETrainer], root: Path, write: bool) -> int:
    """Restore every trainer from its checkpoint; returns the batches drawn before it."""
    positions = set()
    for trainer in trainers:
        directory = root / trainer.name
        found = ckpt.load_checkpoint(directory / "checkpoint")
        if found is None:
            raise SaescopeError(f"nothing to resume: {directory} holds no checkpoint")
        _check_settings(trainer, directory)
        tensors, state = found
        trainer.restore(tensors, state)
        # A checkpoint from before the stream position was stored: every batch drawn was trained.
        positions.add((trainer.step_count, int(state.get("batches", trainer.step_count))))
    if len(positions) != 1:
        raise SaescopeError(
            f"the SAEs' checkpoints in {root} are at different (step, batches) {sorted(positions)}"
        )
    step, drawn = positions.pop()
    if write:
        for trainer in trainers:
            _drop_metrics_after(root / trainer.name / "metrics.jsonl", step)
            config = _configs([trainer])[trainer.name]  # with the free fields' new values
            write_atomic(root / trainer.name / "config.json", strict_json(config).encode())
    return drawn


def _check_settings(trainer: SAETrainer, directory: Path) -> None:
    """Refuse to continue a run with other settings than it was started with."""
    path = directory / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SaescopeError(
            f"cannot resume {directory}: its settings in {path} are unreadable ({err}); "
            "delete the directory to start over"
        ) from err
    given = json.loads(json.dumps(_configs([trainer])[trainer.name]))  # tuples as JSON lists
    diff = _differences(saved, given)
    if diff:
        raise SaescopeError(
            f"cannot resume {directory}: it was started with other settings ("
            + "; ".join(diff)
            + "); resume with the original arguments or train into another output directory"
        )


def _differences(saved: Any, given: Any, name: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(given, dict):
        out = []
        for key in sorted(saved.keys() | given.keys()):
            missing = "(absent)"
            out += _differences(
                saved.get(key, missing), given.get(key, missing), f"{name}.{key}" if name else key
            )
        return out
    if saved == given or name in FREE_ON_RESUME:
        return []
    return [f"{name}: saved {saved!r}, given {given!r}"]


def _drop_metrics_after(path: Path, step: int) -> None:
    """Keep the records up to the checkpoint's step: the resumed run logs the later ones again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the kill
        if record.get("step", 0) <= step:
            kept.append(line + "\n")
    write_atomic(path, "".join(kept).encode())
