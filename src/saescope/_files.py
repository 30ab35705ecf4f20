"""File helpers every layer may use: atomic writes (a reader sees the old file or the new one)
and strict JSON (what every parser accepts, JavaScript's ``JSON.parse`` included)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file, fsync and rename: a reader sees the old file or the new one.

    On failure (a full disk, a read-only directory) the temporary file is removed and the
    error names the path.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def strict_json(obj: Any, indent: int | None = 1) -> str:
    """``obj`` as strict JSON text: every NaN, inf and -inf float becomes ``null``.

    Python's ``json`` writes ``NaN`` / ``-Infinity`` literals, which are not JSON; a metric that
    is undefined (the log10 density of a latent that never fired, a ratio over zero) is
    ``null`` instead. ``allow_nan=False`` guards that nothing non-finite slipped through.
    """
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(value) for value in obj]
    return obj
