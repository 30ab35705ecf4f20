"""Checkpoints without pickle: one safetensors file, its JSON state in the file's metadata.

One file written by one atomic rename is one unit: a kill at any moment leaves the previous
checkpoint or the new one, never tensors from one step with the step counter of another.
The older two-file layout (``checkpoint.safetensors`` then ``checkpoint.json``) is still read,
and refused when its two files disagree (a kill between the two writes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import Tensor

from saescope._files import write_atomic
from saescope.errors import SaescopeError
from saescope.train.optim import Adam

TENSORS = "checkpoint.safetensors"
LEGACY_STATE = "checkpoint.json"
"""The state file of the two-file layout; read, never written."""
METADATA_KEY = "saescope.checkpoint"
"""The safetensors metadata key that holds the JSON state."""


def has_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` holds a checkpoint (complete or not: ``load_checkpoint`` decides)."""
    return (directory / TENSORS).exists() or (directory / LEGACY_STATE).exists()


def save_checkpoint(directory: Path, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
    """Write the tensors with ``state`` in the same file, by one atomic rename."""
    directory.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = safetensors.torch.save(flat, metadata={METADATA_KEY: json.dumps(state)})
    write_atomic(directory / TENSORS, data)
    # A two-file checkpoint continued by this version: its json is stale now, and the state
    # inside the tensors' file wins if a kill leaves it behind.
    (directory / LEGACY_STATE).unlink(missing_ok=True)


def load_checkpoint(directory: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The checkpoint in ``directory`` as (tensors, state), or None if there is none.

    Raises SaescopeError for a damaged one, or a two-file one whose parts disagree.
    """
    if not has_checkpoint(directory):
        return None
    path = directory / TENSORS
    if not path.exists():
        raise _damaged(directory, f"{LEGACY_STATE} has no {TENSORS} beside it")
    try:
        with safetensors.safe_open(path, "pt") as f:
            embedded = (f.metadata() or {}).get(METADATA_KEY)
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
        if embedded is not None:
            state = json.loads(embedded)
        elif (directory / LEGACY_STATE).exists():
            state = json.loads((directory / LEGACY_STATE).read_text())
        else:
            raise _damaged(directory, f"{TENSORS} has no state and there is no {LEGACY_STATE}")
    except SaescopeError:
        raise
    except Exception as err:  # json / safetensors errors: a damaged file
        raise _damaged(directory, str(err)) from err
    _check_steps(directory, tensors, state)
    return tensors, state


def _check_steps(directory: Path, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
    """Every Adam moment was stepped once per training step: its counter must be ``step``."""
    if not isinstance(state.get("step"), int):
        raise _damaged(directory, f"its state has no integer 'step' ({state})")
    counters = {int(v) for k, v in tensors.items() if k.startswith("opt.") and k.endswith(".step")}
    expected = {state["step"]} if state["step"] else set()  # no optimizer state before step 1
    if counters != expected:
        raise _damaged(
            directory,
            f"its state says step {state['step']}, its optimizer tensors were stepped "
            f"{sorted(counters)} times (a kill between the two files of the old layout?)",
        )


def _damaged(directory: Path, why: str) -> SaescopeError:
    return SaescopeError(
        f"checkpoint in {directory} is damaged: {why}; delete {directory} to start over"
    )


def optimizer_tensors(optimizer: Adam) -> dict[str, Tensor]:
    out = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            out[f"opt.{index}.{key}"] = torch.as_tensor(value)
    return out


def load_optimizer_tensors(optimizer: Adam, tensors: dict[str, Tensor]) -> None:
    """Restore optimizer state with each moment laid out like its parameter (fused Adam walks
    parameter, gradient and moments in memory order, so their strides must agree)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, index, key = name.split(".", 2)
            param = params[int(index)]
            if value.shape != param.shape and value.t().shape == param.shape:
                value = value.t()  # a checkpoint from before W_enc's moments were stored transposed
            if value.shape == param.shape:
                value = torch.empty_like(param).copy_(value)
            state.setdefault(int(index), {})[key] = value
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)
