"""What the server holds: its limits, and each served index with its SAE, the table of all
features and the feature map, all read once at start."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saescope.errors import SaescopeError
from saescope.interpret.active import check_index
from saescope.interpret.query import FeatureIndex, FeatureStats
from saescope.interpret.sources import FeatureSource, sae_source

log = logging.getLogger(__name__)

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; more is refused with a 4xx naming the limit."""

    prompt_tokens: int = 256
    """Tokens of a prompt, a test text or held-out loss text."""
    text_chars: int = 4000
    """Characters of any text field, checked before tokenizing."""
    new_tokens: int = 64
    samples: int = 4
    sweep_points: int = 8
    queued_jobs: int = 8
    """Model jobs waiting or running at once (the rest get 429)."""
    edits: int = 16
    """Feature and neuron edits in one steering request."""
    body_bytes: int = 65_536

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise SaescopeError(f"the serve limit {name} must be >= 1, got {value}")


@dataclass
class Served:
    """One index under its name, with what its pages need precomputed."""

    name: str
    index: FeatureIndex
    source: FeatureSource | None
    """The SAE the index was built from (None: not found, or raw neurons): the feature map,
    the test-text box and steering need it."""
    stats: list[FeatureStats]
    peaks: list[list[tuple[str, int]]]
    metrics: dict[str, Any] | None = None
    layout: np.ndarray | None = None
    """(F, 2) feature-map coordinates in [0, 1] (None without an SAE)."""
    layout_method: str = ""
    why_no_source: str = ""


def check_name(name: str) -> str:
    if not name or not set(name) <= NAME_CHARS:
        raise SaescopeError(
            f"index name {name!r}: use letters, digits, '-', '_' or '.' (it goes in URLs)"
        )
    return name


def load_served(
    name: str,
    index_path: str | Path,
    sae: str | Path | None = None,
    metrics: str | Path | None = None,
) -> Served:
    """Open ``index_path`` read-only under ``name``, with its SAE (``sae``, else the path the
    index records) when that exists and matches, and its metrics (``metrics``, else a
    ``metrics.json`` beside the SAE)."""
    index = FeatureIndex(index_path, read_only=True)
    built = index.meta["source"]
    source, why = None, ""
    sae_dir = Path(sae) if sae else Path(built["path"]) if built.get("path") else None
    if built.get("kind") != "sae" and sae is None:
        why = "the index is of raw neurons, which have no decoder to steer or map"
    elif sae_dir is None or not (sae_dir / "sae_weights.safetensors").is_file():
        why = f"no SAE at {sae_dir} (give --sae {name}=DIR)"
        if sae is not None:
            raise SaescopeError(f"--sae {sae}: no SAE there (sae_weights.safetensors missing)")
    else:
        source = sae_source(sae_dir, index.meta["site"])
        check_index(index, source)
    if why:
        log.warning("index %s: %s; its map, test box and steering are off", name, why)
    stats = index.table()
    served = Served(
        name=check_name(name),
        index=index,
        source=source,
        stats=stats,
        peaks=[index.peaks(s.feature) for s in stats],
        metrics=_metrics(metrics, sae_dir),
        why_no_source=why,
    )
    if source is not None:
        served.layout, served.layout_method = feature_layout(source.decoder_rows().numpy())
    return served


def _metrics(path: str | Path | None, sae_dir: Path | None) -> dict[str, Any] | None:
    candidates = [Path(path)] if path else []
    if sae_dir is not None:
        candidates += [sae_dir / "metrics.json", sae_dir / "heldout.json"]
    for p in candidates:
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except (OSError, ValueError) as err:
                raise SaescopeError(f"cannot read the metrics {p}: {err}") from err
            return {"file": str(p), **flat_metrics(data, sae_dir)}
        if path and p == Path(path):
            raise SaescopeError(f"--metrics {path}: no such file")
    return None


def flat_metrics(data: Any, sae_dir: Path | None, limit: int = 60) -> dict[str, Any]:
    """The numbers and strings of a metrics JSON as ``a.b.c`` keys; of an evaluation report
    (``{"saes": {name: ...}}``) the entry of this SAE (by directory name) or the only one."""
    saes = data.get("saes") if isinstance(data, dict) else None
    if isinstance(saes, dict) and saes:
        name = sae_dir.name if sae_dir is not None else ""
        data = saes.get(name, next(iter(saes.values())) if len(saes) == 1 else data)
    out: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, int | float | str) and len(out) < limit:
            out[key or "value"] = value

    walk(data, "")
    return out


def feature_layout(directions: np.ndarray) -> tuple[np.ndarray, str]:
    """(F, 2) coordinates in [0, 1] of the unit decoder directions (F, d): UMAP (cosine) where
    ``umap`` is installed, else their first two principal components."""
    unit = directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    try:
        import umap

        xy = umap.UMAP(n_components=2, metric="cosine", random_state=0).fit_transform(unit)
        method = "UMAP"
    except ImportError:
        centred = unit - unit.mean(0)
        # The top two right singular vectors are the principal axes; (F, d) with d << F.
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T  # (F, 2)
        method = "PCA"
    lo, hi = xy.min(0), xy.max(0)
    return (xy - lo) / np.where(hi > lo, hi - lo, 1.0), method


def log_density_bins(density: np.ndarray, bins: int = 30) -> tuple[np.ndarray, np.ndarray, int]:
    """(counts, log10 edges, dead): a histogram of log10 density over the features that fired,
    and how many never did."""
    fired = density[density > 0]
    dead = int((density <= 0).sum())
    if len(fired) == 0:
        return np.zeros(0, dtype=int), np.zeros(1), dead
    lo = math.floor(float(np.log10(fired.min())))
    hi = max(math.ceil(float(np.log10(fired.max()))), lo + 1)
    counts, edges = np.histogram(np.log10(fired), bins=bins, range=(lo, hi))
    return counts, edges, dead
