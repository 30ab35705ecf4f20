"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from saescope._files import write_atomic
from saescope.errors import SaescopeError
from saescope.train.optim import Adam

TENSORS = "checkpoint.safetensors"
STATE = "checkpoint.json"


def save_checkpoint(directory: Path, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
    """Write tensors first, then the JSON that marks the checkpoint complete."""
    directory.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    write_atomic(directory / TENSORS, safetensors.torch.save(flat))
    write_atomic(directory / STATE, json.dumps(state, indent=1).encode())


def load_checkpoint(directory: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The last complete checkpoint in ``directory``, or None if there is none."""
    if not (directory / STATE).exists():
        return None
    try:
        state = json.loads((directory / STATE).read_text())
        tensors = safetensors.torch.load_file(directory / TENSORS)
    except Exception as err:  # json / safetensors errors: a damaged checkpoint
        raise SaescopeError(
            f"checkpoint in {directory} is damaged ({err}); delete it to start over"
        ) from err
    return tensors, state


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
