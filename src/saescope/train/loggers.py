"""Optional experiment trackers beside metrics.jsonl: wandb and tensorboard, imported lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from saescope.errors import SaescopeError


class Tracker(Protocol):
    def log(self, name: str, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class _Wandb:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as err:
            raise SaescopeError("--log-to wandb needs wandb: pip install wandb") from err
        self.run = wandb.init(project="saescope", dir=str(run_dir), config=config)

    def log(self, name: str, step: int, metrics: dict[str, float]) -> None:
        self.run.log({f"{name}/{k}": v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise SaescopeError(
                "--log-to tensorboard needs tensorboard: pip install tensorboard"
            ) from err
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, name: str, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"{name}/{key}", value, step)

    def close(self) -> None:
        self.writer.close()


TRACKERS: dict[str, type[_Wandb] | type[_TensorBoard]] = {
    "wandb": _Wandb,
    "tensorboard": _TensorBoard,
}
"""The trackers by name: the choices of ``saescope train --log-to``."""


def make_tracker(kind: str, run_dir: Path, config: dict[str, Any]) -> Tracker:
    if kind not in TRACKERS:
        raise SaescopeError(f"unknown tracker {kind!r}; expected one of {', '.join(TRACKERS)}")
    return TRACKERS[kind](run_dir, config)
