"""File helpers every layer may use: atomic writes (a reader sees the old file or the new one)."""

from __future__ import annotations

import os
from pathlib import Path


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
