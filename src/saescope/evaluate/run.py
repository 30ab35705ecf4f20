"""The whole evaluation of saved SAEs: load, check against the data, score, write the report."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from saescope._files import exclusive
from saescope.activations import ActivationCache, open_activations
from saescope.activations.extract import check_context_size, site_rows
from saescope.activations.outliers import OutlierPolicy, OutlierRule
from saescope.data import ContextConfig, Corpus
from saescope.errors import SaescopeError
from saescope.evaluate.reconstruction import Batch, reconstruction_stats
from saescope.evaluate.result import EvalResult, evaluate, special_policy
from saescope.models import LanguageModel
from saescope.sae import SAE, sae_site, sae_site_out

log = logging.getLogger(__name__)


def evaluate_saes(
    sae_dirs: Sequence[str | Path],
    out: str | Path,
    cache_dir: str | Path | None = None,
    model: LanguageModel | None = None,
    corpus: Corpus | None = None,
    context: ContextConfig = ContextConfig(),
    tokens: int = 65_536,
    loss_tokens: int = 8_192,
    ablations: bool = True,
    exclude_special: bool | None = None,
    outliers: OutlierPolicy = OutlierPolicy(),
    encoder: str | None = None,
    absorption: bool = False,
    probing: bool = False,
) -> Path:
    """Score SAEs and write ``metrics.json`` + ``report.html`` into ``out``.

    Reconstruction and latent statistics come from the cache's last shards holding ``tokens``
    rows (the rows ``train --holdout`` keeps out), or, without a cache, from the model's live
    activations on the same contexts as the losses. With a model, the next-token losses with
    each SAE spliced in are measured on ``loss_tokens`` tokens of ``corpus``.

    Which positions count, for the live reconstruction rows and the spliced loss alike: with
    ``exclude_special=None`` each SAE's own ``metadata.exclude_special_tokens`` (what it was
    trained on), else ``exclude_special`` for every SAE. ``context`` only packs the corpus; its
    ``exclude_special`` must stay True (pass ``exclude_special=False`` to keep special tokens).
    A cache's rows are what it captured: an explicit choice the cache contradicts is refused.

    Reconstruction is reported twice, always: on all rows (``reconstruction``) and on the rows
    that are not ``outliers`` (``without_outliers``: norm at most its multiple of the median,
    the cache's first-shard median or, live, the first batch's); the policy's mode does not
    change what is scored.

    A transcoder is scored against its output site's rows (the cache must hold both of its
    sites), its outliers told by its input rows, and spliced in at its output site.

    ``encoder`` (``gp:k=32``, ``topk:k=16``, see ``saescope.coding.parse_encoder``): make every
    SAE's codes that way over its decoder instead of with its own encoder.

    ``absorption`` and ``probing`` (both need ``model``) add the first-letter absorption
    (``evaluate.absorption``) and k-sparse probing on the default corpus (``evaluate.probing``).
    """
    from saescope.coding import with_encoder
    from saescope.data import load_corpus, pack_contexts
    from saescope.evaluate.report import write_report
    from saescope.sae import load_sae

    if cache_dir is None and model is None:
        raise SaescopeError("evaluation needs activations: give a cache (--acts) or a model")
    if not context.exclude_special:
        raise SaescopeError(
            "evaluate_saes reads the special-token choice from exclude_special= (None: each "
            "SAE's metadata), not from context.exclude_special=False; pass exclude_special=False"
        )
    if model is not None:
        check_context_size(model, context.context_size)
    saes = {Path(d).name: (str(d), with_encoder(load_sae(d), encoder)) for d in sae_dirs}
    for path, sae in saes.values():
        sae_site(sae, path)  # a bad site in cfg.json is refused naming the file, before any work
    cache = open_activations(cache_dir) if cache_dir is not None else None
    for name, (_, sae) in saes.items():
        check_compatible(name, sae, cache, model)
        if cache is not None:
            _check_cache_policy(name, sae, cache, cache_dir, exclude_special)
    contexts: list[Tensor] = []
    if model is not None:
        corpus = corpus if corpus is not None else load_corpus()
        n = max(1, loss_tokens // context.context_size)
        contexts = list(itertools.islice(pack_contexts(corpus, model.tokenizer, context), n))
        if not contexts:
            raise SaescopeError(
                f"corpus {corpus.name!r} gives no context of {context.context_size} tokens"
            )
    results = []
    for name, (path, sae) in saes.items():
        site = sae_site(sae, path)
        rows: Iterable[Batch]
        clean: Iterable[Batch]
        if sae.cfg.is_transcoder:
            rows, clean, rule = _transcoder_rows(
                sae, path, site, cache, tokens, outliers, model, contexts, exclude_special
            )
        elif cache is not None:
            everything = list(range(len(cache.manifest.shards)))
            held = cache.split(tokens)[1] if tokens < len(cache) else everything
            rule = cache.outlier_rule(outliers, site)
            rows = cache.batches(8192, site, shuffle=False, shards=held)
            clean = cache.batches(8192, site, shuffle=False, shards=held, outliers=rule.excluding())
        else:
            assert model is not None
            live = list(_live_rows(model, site, contexts, special_policy(sae, exclude_special)))
            rule = outliers.rule_from(live[0])
            rows = live
            clean = [c for c in (rule.excluding().apply(x) for x in live) if len(c)]
        batches = torch.stack(contexts).split(2) if contexts else None  # logits: 2 x T x vocab
        result = evaluate(sae, rows, model, batches, name, path, ablations, exclude_special)
        result = _with_outliers(result, sae, clean, rule)
        if absorption or probing:
            result = _with_probes(result, sae, model, site, absorption, probing)
        results.append(result)
    info = {
        "cache": str(cache_dir) if cache_dir else None,
        "model": model.name if model is not None else None,
        "reconstruction tokens": results[0].reconstruction.tokens,
        "loss tokens": results[0].spliced.tokens if results[0].spliced else None,
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    with exclusive(Path(out), "the report directory"):
        return write_report(results, out, info)


def _transcoder_rows(
    sae: SAE,
    path: str,
    site: str,
    cache: ActivationCache | None,
    tokens: int,
    outliers: OutlierPolicy,
    model: LanguageModel | None,
    contexts: list[Tensor],
    exclude_special: bool | None,
) -> tuple[list[Batch], list[Batch], OutlierRule]:
    """(all (input, output) row pairs, those whose input row is no outlier, the rule)."""
    site_out = sae_site_out(sae, path)
    pairs: list[Batch] = []
    if cache is not None:
        everything = list(range(len(cache.manifest.shards)))
        held = cache.split(tokens)[1] if tokens < len(cache) else everything
        rule = cache.outlier_rule(outliers, site)
        # Unshuffled and unfiltered, the two sites' batches hold the same positions row by row.
        ins = cache.batches(8192, site, shuffle=False, shards=held)
        outs = cache.batches(8192, site_out, shuffle=False, shards=held)
        pairs = list(zip(ins, outs, strict=True))
    else:
        assert model is not None
        policy = special_policy(sae, exclude_special)
        for batch in torch.stack(contexts).split(8):
            got = site_rows(model, batch, [site, site_out], policy, torch.float32, "cpu")
            pairs.append((got.acts[model.site(site).name], got.acts[model.site(site_out).name]))
        rule = outliers.rule_from(pairs[0][0])
    excluding = rule.excluding()
    clean: list[Batch] = []
    for pair in pairs:
        x, y = pair if isinstance(pair, tuple) else (pair, pair)
        kept = ~excluding.outliers(x)
        if bool(kept.any()):
            clean.append((x[kept], y[kept]))
    return pairs, clean, rule


def _with_probes(
    result: EvalResult,
    sae: SAE,
    model: LanguageModel | None,
    site: str,
    absorption: bool,
    probing: bool,
) -> EvalResult:
    from saescope.evaluate import absorption as absorb
    from saescope.evaluate import probing as probe

    if model is None:
        raise SaescopeError("absorption and probing run text through the model: give --model")
    letters = absorb.absorption(sae, absorb.letter_data(model, site)) if absorption else None
    tasks = probe.sparse_probing(sae, probe.corpus_tasks(model, site)) if probing else None
    return replace(result, absorption=letters, probing=tasks)


def _with_outliers(
    result: EvalResult, sae: SAE, clean: Iterable[Batch], rule: OutlierRule
) -> EvalResult:
    without = reconstruction_stats(sae, clean)
    flagged = result.reconstruction.tokens - without.tokens
    info = rule.to_dict() | {"rows": result.reconstruction.tokens, "outlier_rows": flagged}
    return replace(result, without_outliers=without, outliers=info)


def check_compatible(
    name: str,
    sae: SAE,
    cache: ActivationCache | None,
    model: LanguageModel | None,
    output_cached: bool = True,
) -> None:
    """Refuse an SAE (``name`` in messages) trained on another model or site width than the
    cache's or the model's, before any computation. ``output_cached=False``: a transcoder's
    output site is checked against the model only (the index reads its input site alone)."""
    site = sae_site(sae)
    model_name = sae.cfg.metadata.model_name
    if cache is not None and model_name and model_name != cache.manifest.model:
        raise SaescopeError(
            f"SAE {name} was trained on {model_name!r}, the cache holds "
            f"{cache.manifest.model!r} activations"
        )
    widths = [("d_in", site, sae.cfg.d_in)]
    if sae.cfg.is_transcoder:
        widths.append(("d_out", sae_site_out(sae), sae.cfg.out_dim))
    for what, at, width in widths:
        if cache is not None and (output_cached or at == site) and cache.d(at) != width:
            raise SaescopeError(
                f"SAE {name} has {what}={width}, the cache's {at} has d={cache.d(at)}"
            )
        if model is not None and model.site_dim(at) != width:
            raise SaescopeError(
                f"SAE {name} has {what}={width}, {at} of {model.name} has "
                f"width {model.site_dim(at)}; was it trained on another model?"
            )


def _check_cache_policy(
    name: str,
    sae: SAE,
    cache: ActivationCache,
    cache_dir: str | Path | None,
    exclude_special: bool | None,
) -> None:
    """The cache's rows were captured under one special-token choice; say so if it differs."""
    captured = bool(cache.manifest.context.get("exclude_special", True))
    wanted = special_policy(sae, exclude_special)
    if captured == wanted:
        return
    held = "excludes" if captured else "keeps"
    if exclude_special is not None:
        raise SaescopeError(
            f"the cache {cache_dir} {held} special-token positions, so its rows cannot be "
            f"evaluated with exclude_special={exclude_special}; drop --keep-special or "
            "capture a cache with the same choice"
        )
    log.warning(
        "SAE %s was trained with exclude_special_tokens=%s but the cache %s %s special "
        "tokens; its reconstruction rows follow the cache, its spliced loss the SAE",
        name,
        wanted,
        cache_dir,
        held,
    )


def _live_rows(
    model: LanguageModel, site: str, contexts: list[Tensor], exclude_special: bool
) -> Iterator[Tensor]:
    for batch in torch.stack(contexts).split(8):
        rows = site_rows(model, batch, [site], exclude_special, torch.float32, "cpu")
        yield rows.acts[model.site(site).name]
