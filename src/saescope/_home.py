"""Where saescope keeps files it derives once and reuses (converted models)."""

import os
from pathlib import Path


def saescope_home() -> Path:
    """``$SAESCOPE_HOME``, else ``~/.cache/saescope``; created on first use."""
    home = Path(os.environ.get("SAESCOPE_HOME", Path.home() / ".cache" / "saescope"))
    home.mkdir(parents=True, exist_ok=True)
    return home
