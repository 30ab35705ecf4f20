"""Shard files: safetensors holding, for the same rows, each site's activations and provenance.

Keys: ``acts.<site>`` (N, d) in the cache dtype, ``tokens`` (N,) int32 token ids, ``context``
(N,) int64 index of the context in the corpus stream, ``position`` (N,) int32 position in it,
and ``norms.<site>`` (N,) float32 the L2 norm of each row (``outliers.row_norms`` of the stored
values). Caches written before norms were recorded lack ``norms.*``: readers compute them.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

from saescope._files import write_atomic
from saescope._finite import nonfinite_rows
from saescope.activations.manifest import ShardInfo
from saescope.errors import SaescopeError

PROVENANCE = ("tokens", "context", "position")
_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I32": np.int32, "I64": np.int64}


def acts_key(site: str) -> str:
    return f"acts.{site}"


def norms_key(site: str) -> str:
    return f"norms.{site}"


def write_shard(path: Path, tensors: dict[str, Tensor]) -> tuple[int, str]:
    """Write atomically; returns (bytes, sha256) for the manifest."""
    data = safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()})
    write_atomic(path, data)
    return len(data), hashlib.sha256(data).hexdigest()


def _check_size(path: Path, info: ShardInfo) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError as err:
        raise SaescopeError(
            f"shard {path} is missing (the manifest lists it); restore it or re-capture"
        ) from err
    if size != info.bytes:
        raise SaescopeError(
            f"shard {path} is {size} bytes, the manifest says {info.bytes}: it is truncated or "
            "was overwritten; re-capture it (delete it and run `saescope capture --resume`)"
        )


def read_header(path: Path) -> tuple[dict[str, dict], int]:
    """The safetensors header of a shard (key -> {dtype, shape, data_offsets}) and where the
    data begins."""
    try:
        with path.open("rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
    except FileNotFoundError as err:
        raise SaescopeError(
            f"shard {path} is missing (the manifest lists it); restore it or re-capture"
        ) from err
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SaescopeError(f"shard {path} has a corrupt header ({err})") from err
    header.pop("__metadata__", None)
    return header, 8 + header_len


def check_shapes(path: Path, info: ShardInfo, sites: dict[str, int], shapes: dict) -> None:
    """The shard holds ``info.rows`` rows of every tensor, and each site at its manifest width."""
    for key in (*PROVENANCE, *(acts_key(s) for s in sites)):
        if key not in shapes:
            raise SaescopeError(
                f"shard {path} has no tensor {key!r} (it holds {sorted(shapes)}); the manifest "
                "does not describe this file: restore the manifest or re-capture"
            )
        want = [info.rows, sites[key[5:]]] if key.startswith("acts.") else [info.rows]
        if list(shapes[key]) != want:
            raise SaescopeError(
                f"shard {path}: {key} has shape {list(shapes[key])}, the manifest says {want} "
                "(rows, width); the manifest was edited or belongs to other files: restore it "
                "or re-capture"
            )
    for site in sites:  # optional: older caches have no norms
        key = norms_key(site)
        if key in shapes and list(shapes[key]) != [info.rows]:
            raise SaescopeError(
                f"shard {path}: {key} has shape {list(shapes[key])}, the manifest says "
                f"[{info.rows}] rows; the shard is damaged: re-capture it"
            )


def check_finite(path: Path, key: str, x: Tensor, rows: np.ndarray | None = None) -> None:
    """Refuse NaN/inf, naming the shard and the (shard-local) row; ``rows``: the rows ``x`` holds."""
    bad_rows = nonfinite_rows(x)
    if bad_rows is None:
        return
    first = int(bad_rows.nonzero()[0, 0])
    row = first if rows is None else int(rows[first])
    bad = int(bad_rows.sum())
    raise SaescopeError(
        f"shard {path} row {row} of {key} holds NaN or inf ({bad} such rows in the part read): "
        "the model produced non-finite activations (fp16 overflow?); re-capture with --dtype "
        "fp32 or bf16"
    )


def read_shard(
    path: Path, info: ShardInfo, sites: dict[str, int], verify: bool = True
) -> dict[str, Tensor]:
    """Read a whole shard, checking its size, (``verify``) its sha256, its shapes against the
    manifest and that every activation is finite."""
    _check_size(path, info)
    data = path.read_bytes()
    if verify and hashlib.sha256(data).hexdigest() != info.sha256:
        raise SaescopeError(
            f"shard {path} fails its checksum (sha256 differs from the manifest): it is corrupt; "
            "delete it and run `saescope capture --resume` to write it again"
        )
    try:
        tensors = safetensors.torch.load(data)
    except Exception as err:  # safetensors raises its own error types
        raise SaescopeError(f"shard {path} cannot be parsed ({err}); it is corrupt") from err
    check_shapes(path, info, sites, {k: list(v.shape) for k, v in tensors.items()})
    for site in sites:
        check_finite(path, acts_key(site), tensors[acts_key(site)])
    return tensors


class ShardView:
    """Memory-mapped, read-only random access to the tensors of one shard."""

    def __init__(self, path: Path, info: ShardInfo, sites: dict[str, int]) -> None:
        _check_size(path, info)
        self.path = path
        header, data_start = read_header(path)
        check_shapes(path, info, sites, {k: meta["shape"] for k, meta in header.items()})
        self.arrays: dict[str, tuple[np.memmap, str]] = {}
        for key, meta in header.items():
            start, end = meta["data_offsets"]
            count = (end - start) // np.dtype(_NUMPY[meta["dtype"]]).itemsize
            array = np.memmap(
                path,
                dtype=_NUMPY[meta["dtype"]],
                mode="r",
                offset=data_start + start,
                shape=(count,),
            ).reshape(meta["shape"])
            self.arrays[key] = (array, meta["dtype"])

    def take(self, key: str, rows: np.ndarray) -> Tensor:
        """Rows ``rows`` (sorted int array) of tensor ``key``; only those bytes are read."""
        array, dtype = self.arrays[key]
        out = torch.from_numpy(np.ascontiguousarray(array[rows]))
        out = out.view(torch.bfloat16) if dtype == "BF16" else out
        if key.startswith("acts."):
            check_finite(self.path, key, out, rows)
        return out
