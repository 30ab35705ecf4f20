"""The architecture registry: the CLI's choices and the loader read from it.

The entry is the SAE class itself; its class attributes (see ``SAE``) are the architecture's
facts. Training recipes are registered under the same name in ``saescope.train``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from saescope.errors import SaescopeError

if TYPE_CHECKING:
    from saescope.sae.base import SAE

    S = TypeVar("S", bound=type[SAE])

ARCHITECTURES: dict[str, type[SAE]] = {}

_REQUIRED = ("architecture", "saelens_name", "description")


def register_architecture(cls: S) -> S:
    """Add ``cls`` under ``cls.architecture`` (a class decorator); a name taken twice is an error."""
    missing = [name for name in _REQUIRED if not isinstance(getattr(cls, name, None), str)]
    if missing:
        raise SaescopeError(
            f"{cls.__name__} cannot be registered: it sets no {', '.join(missing)}; "
            "give each as a class attribute string"
        )
    if cls.architecture in ARCHITECTURES:
        raise SaescopeError(
            f"architecture {cls.architecture!r} is already registered by "
            f"{ARCHITECTURES[cls.architecture].__qualname__}; choose another name"
        )
    ARCHITECTURES[cls.architecture] = cls
    return cls


def architecture_for_saelens(name: str) -> str:
    """Our architecture key for a SAELens ``architecture`` value."""
    if name in ARCHITECTURES:
        return name
    for key, cls in ARCHITECTURES.items():
        if name == cls.saelens_name:
            return key
    raise SaescopeError(f"unknown SAE architecture {name!r}; known: {sorted(ARCHITECTURES)}")


# Importing the architectures fills the registry.
from saescope.sae import architectures as _architectures  # noqa: E402, F401
