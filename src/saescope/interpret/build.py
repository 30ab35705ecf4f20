"""Build a feature index from an SAE directory or a site's neurons, over a cache or a live model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from saescope.activations import open_activations
from saescope.data import ContextConfig, Corpus
from saescope.errors import SaescopeError
from saescope.evaluate.run import check_compatible
from saescope.interpret.collect import CollectConfig
from saescope.models import DEFAULT_MODEL, LanguageModel


def index_features(
    out: str | Path,
    *,
    sae_dir: str | Path | None = None,
    site: str | None = None,
    model: LanguageModel | str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    cache_dir: str | Path | None = None,
    corpus: Corpus | None = None,
    context: ContextConfig = ContextConfig(),
    tokens: int = 1_000_000,
    collect: CollectConfig = CollectConfig(),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    checkpoint_seconds: float = 60.0,
) -> Path:
    """Build the feature index of an SAE (``sae_dir``) or of a site's raw neurons (``site``),
    over a cache (``cache_dir``) or the model run live on ``corpus`` (None: the default corpus).

    ``model``: a loaded model, or a name loaded with ``dtype`` on ``device``; None: the
    cache's own model, else the default one.
    """
    from saescope.interpret.batches import cache_batches, live_batches
    from saescope.interpret.index import build_index
    from saescope.interpret.sources import neuron_source, sae_source
    from saescope.models import load_model

    cache = open_activations(cache_dir) if cache_dir is not None else None
    if model is None:
        model = cache.manifest.model if cache is not None else DEFAULT_MODEL
    if isinstance(model, str):
        model = load_model(model, dtype=dtype, device=device)
    if sae_dir is not None:
        source = sae_source(sae_dir, site)
        check_compatible(str(sae_dir), source.sae, cache, model)  # type: ignore[arg-type]
    elif site is not None:
        source = neuron_source(model, site)
    else:
        raise SaescopeError("index what? give an SAE directory, or a site to index its neurons")
    meta: dict[str, object] = {"model": model.name}
    if cache is not None:
        if cache.manifest.model != model.name:
            raise SaescopeError(
                f"the cache holds {cache.manifest.model!r} activations, the model is "
                f"{model.name!r}: weights-based columns (logits) would describe another model"
            )
        cache_site = cache.site(source.site)
        size = int(cache.manifest.context["context_size"])
        meta |= {"dataset": cache.manifest.dataset, "context": cache.manifest.context,
                 "activations": str(Path(cache_dir).resolve())}  # type: ignore[arg-type]  # fmt: skip

        def batches(start: int) -> Iterable:
            return cache_batches(cache, cache_site, size, start=start)
    else:
        from saescope.data import load_corpus

        corpus = corpus if corpus is not None else load_corpus()
        meta |= {"dataset": corpus.name, "context": asdict(context)}

        def batches(start: int) -> Iterable:
            return live_batches(model, source.site, corpus, context, start=start)

    return build_index(
        source, model, batches, out, tokens, meta, collect,
        resume=resume, overwrite=overwrite, progress=progress,
        checkpoint_seconds=checkpoint_seconds,
    )  # fmt: skip
