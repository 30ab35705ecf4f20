"""``saescope quickstart``: every stage that exists, on the embedded default model and corpus."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from saescope.activations import capture, open_activations
from saescope.activations.manifest import MANIFEST
from saescope.data import load_corpus
from saescope.models import DEFAULT_MODEL, load_model

log = logging.getLogger(__name__)


def run_quickstart(out: Path, tokens: int = 500_000, site: str = "layers.6.resid_post") -> None:
    """Capture ``tokens`` activations at ``site``; reruns reuse (or resume) what is on disk."""
    start = time.perf_counter()
    log.info("[1/1] loading %s (first run converts it from GGUF, about a minute)", DEFAULT_MODEL)
    model = load_model(DEFAULT_MODEL)
    cache_dir = out / "activations"
    manifest = cache_dir / MANIFEST
    if manifest.exists() and open_activations(cache_dir, allow_incomplete=True).manifest.complete:
        log.info("activation cache %s already complete; reusing it", cache_dir)
        cache = open_activations(cache_dir)
    else:
        cache = capture(
            model, [site], cache_dir, tokens=tokens, corpus=load_corpus(), resume=manifest.exists()
        )
    log.info("done in %.0fs. Outputs:", time.perf_counter() - start)
    log.info(
        "  activations: %s (%s rows x d=%d, %s) - open with saescope.open_activations(%r)",
        cache.root,
        f"{len(cache):,}",
        cache.d(),
        cache.manifest.dtype,
        str(cache.root),
    )
