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
    """Our architecture key for a SAELens ``architecture`` value (an SAE's; for a transcoder's
    see ``split_transcoder_name``)."""
    if name in ARCHITECTURES:
        return name
    for key, cls in ARCHITECTURES.items():
        if name == cls.saelens_name:
            return key
    raise SaescopeError(f"unknown SAE architecture {name!r}; known: {sorted(ARCHITECTURES)}")


_TRANSCODER = "transcoder"
_SKIP = "skip_"


def transcoder_name(architecture: str, skip: bool) -> str:
    """The SAELens v6 architecture name of a transcoder of our ``architecture``:
    ``transcoder`` / ``skip_transcoder`` for ReLU, ``jumprelu_transcoder`` /
    ``jumprelu_skip_transcoder`` for JumpReLU; the others (SAELens has no such transcoder)
    follow the same pattern, e.g. ``topk_skip_transcoder``, which only saescope reads."""
    saelens = ARCHITECTURES[architecture].saelens_name
    prefix = "" if saelens == "standard" else f"{saelens}_"
    return f"{prefix}{_SKIP if skip else ''}{_TRANSCODER}"


def split_transcoder_name(name: str) -> tuple[str, bool] | None:
    """(the SAE architecture name, has a skip) of a transcoder name such as
    ``jumprelu_skip_transcoder``; None for a name that is not a transcoder's."""
    if not name.endswith(_TRANSCODER):
        return None
    base = name.removesuffix(_TRANSCODER).removesuffix("_")
    skip = base == "skip" or base.endswith("_skip")
    base = base.removesuffix("skip").removesuffix("_")
    return (base or "standard"), skip


# Importing the architectures fills the registry.
from saescope.sae import architectures as _architectures  # noqa: E402, F401
