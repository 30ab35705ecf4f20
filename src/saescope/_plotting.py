"""matplotlib, imported lazily (the ``plots`` extra), with a headless backend."""

from __future__ import annotations

from typing import Any

from saescope.errors import SaescopeError


def pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise SaescopeError("plots need matplotlib: pip install 'saescope[plots]'") from err
    return plt
