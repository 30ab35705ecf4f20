"""Build a feature index from an SAE directory or a site's neurons, over a cache or a live model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

from saescope.activations import open_activations
from saescope.activations.outliers import OutlierPolicy, OutlierRule
from saescope.data import ContextConfig, Corpus
from saescope.errors import SaescopeError
from saescope.evaluate.run import check_compatible
from saescope.interpret.collect import Batch, CollectConfig
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
    outliers: OutlierPolicy = OutlierPolicy(),
    encoder: str | None = None,
) -> Path:
    """Build the feature index of an SAE (``sae_dir``) or of a site's raw neurons (``site``),
    over a cache (``cache_dir``) or the model run live on ``corpus`` (None: the default corpus).

    ``model``: a loaded model, or a name loaded with ``dtype`` on ``device``; None: the
    cache's own model, else the default one.

    ``outliers`` applies to the rows before they are encoded, as in training: excluded rows
    are not counted (densities are over the rows kept) and never become examples, though their
    tokens still show in other rows' windows; down-weighted rows are encoded scaled. The median
    norm is the cache's (first shard) or, live, the first batch's.
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
        source = sae_source(sae_dir, site, encoder)
        # a transcoder's output site need not be cached: the index encodes its input only
        check_compatible(str(sae_dir), source.sae, cache, model, output_cached=False)  # type: ignore[arg-type]
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

        rule = cache.outlier_rule(outliers, cache_site)
        meta["outliers"] = rule.to_dict()

        def batches(start: int) -> Iterable:
            return _applied(cache_batches(cache, cache_site, size, start=start), rule)
    else:
        from saescope.data import load_corpus

        corpus = corpus if corpus is not None else load_corpus()
        # Live, the median is the first batch's, which a resumed build sees anew: only the
        # policy itself is part of what must match.
        meta |= {"dataset": corpus.name, "context": asdict(context), "outliers": asdict(outliers)}

        def batches(start: int) -> Iterable:
            live = live_batches(model, source.site, corpus, context, start=start)
            return _applied(live, outliers)

    return build_index(
        source, model, batches, out, tokens, meta, collect,
        resume=resume, overwrite=overwrite, progress=progress,
        checkpoint_seconds=checkpoint_seconds,
    )  # fmt: skip


def _applied(
    batches: Iterable[tuple[Batch, int]], policy: OutlierPolicy | OutlierRule
) -> Iterator[tuple[Batch, int]]:
    """``batches`` with the outlier rule applied to their rows (a policy: the first batch's
    median); an excluded row leaves ``acts`` and its ``row_context`` / ``row_position``."""
    rule = policy if isinstance(policy, OutlierRule) else None
    for batch, cursor in batches:
        rule = rule or policy.rule_from(batch.acts)  # type: ignore[union-attr]
        acts, kept = rule.select(batch.acts)
        if kept is not None:
            batch = replace(
                batch, acts=acts, row_context=batch.row_context[kept],
                row_position=batch.row_position[kept],
            )  # fmt: skip
        elif acts is not batch.acts:
            batch = replace(batch, acts=acts)
        yield batch, cursor
