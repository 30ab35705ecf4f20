"""The manifest of an activation cache: what was captured, from what, and which shards hold it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from saescope._files import write_atomic
from saescope.errors import SaescopeError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ShardInfo:
    """One shard file: a run of whole contexts captured by one rank."""

    file: str
    """Path relative to the cache directory."""
    rank: int
    """Rank that wrote it (0 outside torchrun)."""
    index: int
    """Shard number within its rank."""
    rows: int
    """Activation rows (kept token positions) it holds."""
    contexts_done: int
    """Contexts of its rank's stream consumed up to and including this shard (for --resume)."""
    bytes: int
    sha256: str

    def __post_init__(self) -> None:
        for name in ("rank", "index", "rows", "contexts_done", "bytes"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise SaescopeError(
                    f"shard {self.file!r}: {name} must be an integer >= 0, found {value!r}"
                )
        if not isinstance(self.file, str) or not isinstance(self.sha256, str):
            raise SaescopeError(
                f"shard entry: file and sha256 must be strings, found {self.file!r}, "
                f"{self.sha256!r}"
            )


@dataclass(frozen=True)
class Manifest:
    """Everything needed to read a cache and to know where its rows came from."""

    model: str
    model_type: str
    sites: dict[str, int]
    """Site name -> activation width d."""
    dtype: str
    """Storage dtype of activations: float32, bfloat16 or float16."""
    context: dict[str, Any]
    """The ContextConfig used for tokenization."""
    dataset: str
    text_field: str
    tokens: int
    """Rows asked for (all ranks together)."""
    world_size: int
    saescope_version: str
    shards: tuple[ShardInfo, ...] = ()
    complete: bool = False
    """True once every rank reached its target or the corpus ran out."""
    format_version: int = FORMAT_VERSION
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.sites, dict) or not self.sites:
            raise SaescopeError(f"sites must map site names to widths, found {self.sites!r}")
        for site, d in self.sites.items():
            if not _is_int(d) or d < 1:
                raise SaescopeError(f"site {site!r} has width {d!r}; expected an integer >= 1")
        if not _is_int(self.tokens) or not _is_int(self.world_size) or self.world_size < 1:
            raise SaescopeError(
                f"tokens and world_size must be integers (world_size >= 1), found "
                f"{self.tokens!r} and {self.world_size!r}"
            )
        if not isinstance(self.context, dict):
            raise SaescopeError(f"context must be an object, found {self.context!r}")

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed capture must share with the one it continues."""
        keep = ("model", "model_type", "sites", "dtype", "context", "dataset", "text_field")
        return {k: getattr(self, k) for k in keep} | {"world_size": self.world_size}

    def with_shard(self, shard: ShardInfo) -> Manifest:
        return replace(self, shards=(*self.shards, shard))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Parse and validate; raises SaescopeError (TypeError for unknown or missing keys)."""
        if not isinstance(data, dict):
            raise SaescopeError(f"expected a JSON object, found a {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise SaescopeError(
                f"cache format version {version} is not the {FORMAT_VERSION} this saescope reads; "
                "re-capture with this version"
            )
        shards = data.get("shards", [])
        if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
            raise SaescopeError(f"shards must be a list of objects, found {shards!r:.80}")
        return cls(**{**data, "shards": tuple(ShardInfo(**s) for s in shards)})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise SaescopeError(
            f"{path} not found: {path.parent} is not an activation cache "
            "(write one with `saescope capture`)"
        ) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SaescopeError(f"{path} is corrupt ({err}); re-capture or restore it") from err
    if isinstance(data, dict) and data.get("format_version") != FORMAT_VERSION:
        return Manifest.from_dict(data)  # raises the version error as it is
    try:
        return Manifest.from_dict(data)
    except (TypeError, SaescopeError) as err:
        raise SaescopeError(f"{path} is corrupt ({err}); re-capture or restore it") from err


def save_manifest(path: Path, manifest: Manifest) -> None:
    write_atomic(path, manifest.to_json().encode())
