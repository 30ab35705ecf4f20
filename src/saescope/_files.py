"""File helpers every layer may use: atomic writes (a reader sees the old file or the new one),
an exclusive lock on an output directory (one writer at a time) and strict JSON (what every
parser accepts, JavaScript's ``JSON.parse`` included)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saescope.errors import SaescopeError

LOCK = ".saescope.lock"


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file, fsync and rename: a reader sees the old file or the new one.

    On failure (a full disk, a read-only directory) the temporary file is removed and the
    error is re-raised.
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


@contextlib.contextmanager
def exclusive(directory: Path, what: str, name: str = LOCK) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (which must exist) for the ``with`` block.

    Non-blocking: if another process holds it, raises SaescopeError naming its pid. The lock is
    ``flock`` on ``<directory>/<name>``, so the OS releases it when the holder dies, even by
    SIGKILL, and a stale lock file never blocks anyone. ``what`` names the directory's role in
    the message (e.g. "the cache", "the run directory").
    """
    path = Path(directory) / name
    try:
        handle = path.open("a+")
    except OSError as err:
        raise SaescopeError(
            f"cannot create the lock file {path} ({err.strerror}); is {directory} writable?"
        ) from err
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise SaescopeError(
                f"{what} {directory} is being written by another saescope process (pid {holder}); "
                "wait for it or choose another --out"
            ) from err
        # The pid is only for the message above; the lock itself is the flock.
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
