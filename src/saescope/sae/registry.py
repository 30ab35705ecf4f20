"""The architecture registry: the CLI's choices and the loader read from it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from saescope.sae.base import SAE

ARCHITECTURES: dict[str, type[SAE]] = {}


def register_architecture(cls: type[SAE]) -> type[SAE]:
    ARCHITECTURES[cls.architecture] = cls
    return cls


def architecture_for_saelens(name: str) -> str:
    """Our architecture key for a SAELens ``architecture`` value."""
    if name in ARCHITECTURES:
        return name
    for key, cls in ARCHITECTURES.items():
        if name == cls.saelens_name:
            return key
    from saescope.errors import SaescopeError

    raise SaescopeError(f"unknown SAE architecture {name!r}; known: {sorted(ARCHITECTURES)}")


# Importing the architectures fills the registry.
from saescope.sae import architectures as _architectures  # noqa: E402, F401
