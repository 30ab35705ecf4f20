"""Recipes that join the layers: train SAEs from a cache or a live model, then score them.

A leaf like ``cli``: it may import every layer, and nothing imports it but the CLI and
quickstart.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from saescope._dist import Rank
from saescope._files import strict_json
from saescope.activations import ActivationCache, open_activations, stream_activations
from saescope.data import ContextConfig, Corpus
from saescope.errors import SaescopeError
from saescope.evaluate import ReconstructionStats, reconstruction_stats, sae_site
from saescope.interpret.collect import CollectConfig
from saescope.models import LanguageModel, Site
from saescope.sae import ARCHITECTURES, SAE, SAEConfig, SAEMetadata, build_sae
from saescope.train import SAETrainer, TrainConfig, fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SAESpec:
    """One SAE of a sweep."""

    architecture: str
    width: int
    k: int | None
    apply_b_dec_to_input: bool = True

    @property
    def name(self) -> str:
        return f"{self.architecture}-w{self.width}" + (f"-k{self.k}" if self.k else "")


def sweep(
    architectures: Sequence[str], widths: Sequence[int], ks: Sequence[int], b_dec_input: bool = True
) -> list[SAESpec]:
    """Every combination; k only for architectures that take one."""
    specs: list[SAESpec] = []
    for arch in architectures:
        needs_k = ARCHITECTURES[arch].needs_k if arch in ARCHITECTURES else False
        for width in widths:
            for k in ks if needs_k else [None]:
                specs.append(SAESpec(arch, width, k, b_dec_input))
    return specs


@dataclass(frozen=True)
class TrainedSAE:
    name: str
    sae: SAE
    heldout: ReconstructionStats | None
    path: Path


def metadata_from_cache(cache: ActivationCache, site: str) -> SAEMetadata:
    m = cache.manifest
    return SAEMetadata(
        model_name=m.model,
        hook_name=Site.parse(site).tl_name,
        site=site,
        context_size=m.context["context_size"],
        prepend_bos=m.context["prepend_bos"],
        exclude_special_tokens=m.context["exclude_special"],
        dataset_path=m.dataset,
    )


def _trainers(
    specs: list[SAESpec], d_in: int, cfg: TrainConfig, metadata: SAEMetadata, device: torch.device
) -> list[SAETrainer]:
    trainers = []
    for spec in specs:
        sae_cfg = SAEConfig(
            d_in=d_in,
            d_sae=spec.width,
            architecture=spec.architecture,
            k=spec.k,
            apply_b_dec_to_input=spec.apply_b_dec_to_input,
            metadata=metadata,
        )
        sae = build_sae(sae_cfg, seed=cfg.seed).to(device)
        trainers.append(SAETrainer(sae, cfg, name=spec.name))
    return trainers


def train_from_cache(
    cache_dir: str | Path,
    out: str | Path,
    specs: list[SAESpec],
    cfg: TrainConfig,
    site: str | None = None,
    holdout_rows: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = False,
    progress: bool = True,
    log_to: Sequence[str] = (),
) -> list[TrainedSAE]:
    """Train ``specs`` on a cache (the last shards held out), then score them on the held-out rows."""
    cache = open_activations(cache_dir)
    site = cache.site(site)
    train_shards, held = cache.split(holdout_rows)
    log.info(
        "training on %s rows of %s (%d shards); %s rows held out",
        f"{cache.rows_in(train_shards):,}",
        site,
        len(train_shards),
        f"{cache.rows_in(held):,}",
    )
    trainers = _trainers(
        specs, cache.d(site), cfg, metadata_from_cache(cache, site), torch.device(device)
    )
    rank = Rank.current()  # under torchrun each rank reads its own share of the shards
    batches = cache.batches(
        cfg.batch_size,
        site,
        seed=cfg.seed,
        epochs=None,
        shards=train_shards,
        drop_last=True,
        rank=rank.rank,
        world_size=rank.world_size,
    )
    saes = fit(trainers, batches, out, resume=resume, progress=progress, log_to=log_to)
    if rank.rank != 0:
        return []
    heldout = (lambda: cache.batches(8192, site, shuffle=False, shards=held)) if held else None
    return _finish(trainers, saes, Path(out), heldout)


def train_live(
    model: LanguageModel,
    site: str,
    corpus: Corpus,
    context: ContextConfig,
    out: str | Path,
    specs: list[SAESpec],
    cfg: TrainConfig,
    device: str | torch.device = "cpu",
    resume: bool = False,
    progress: bool = True,
    log_to: Sequence[str] = (),
) -> list[TrainedSAE]:
    """Train on activations streamed from the model (no cache); one pass over the corpus."""
    parsed = model.site(site)
    metadata = SAEMetadata(
        model_name=model.name,
        hook_name=parsed.tl_name,
        site=parsed.name,
        context_size=context.context_size,
        prepend_bos=context.prepend_bos,
        exclude_special_tokens=context.exclude_special,
        dataset_path=corpus.name,
    )
    trainers = _trainers(specs, model.site_dim(parsed), cfg, metadata, torch.device(device))
    batches = stream_activations(model, parsed, cfg.batch_size, corpus, context, seed=cfg.seed)
    saes = fit(
        trainers,
        _full(batches, cfg.batch_size),
        out,
        resume=resume,
        progress=progress,
        log_to=log_to,
    )
    return _finish(trainers, saes, Path(out), None)


def _full(batches: Iterable[Tensor], size: int) -> Iterator[Tensor]:
    return (b for b in batches if len(b) == size)


def _finish(
    trainers: list[SAETrainer],
    saes: list[SAE],
    out: Path,
    heldout: Callable[[], Iterable[Tensor]] | None,
) -> list[TrainedSAE]:
    results, summary = [], {}
    for trainer, sae in zip(trainers, saes, strict=True):
        stats = reconstruction_stats(sae, heldout()) if heldout is not None else None
        if stats is not None:
            (out / trainer.name / "heldout.json").write_text(strict_json(stats.to_dict()))
        results.append(TrainedSAE(trainer.name, sae, stats, out / trainer.name))
        summary[trainer.name] = {
            "heldout": stats.to_dict() if stats else None,
            "train_tokens": trainer.tracker.tokens,
            "dead_fraction_train": float(trainer.tracker.dead.float().mean()),
        }
    (out / "summary.json").write_text(strict_json(summary))
    return results


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
) -> Path:
    """Score SAEs and write ``metrics.json`` + ``report.html`` into ``out``.

    Reconstruction and latent statistics come from the cache's last shards holding ``tokens``
    rows (the rows ``train --holdout`` keeps out), or, without a cache, from the model's live
    activations on the same contexts as the losses. With a model, the next-token losses with
    each SAE spliced in are measured on ``loss_tokens`` tokens of ``corpus``.
    """
    from saescope.data import load_corpus, pack_contexts
    from saescope.evaluate import evaluate
    from saescope.evaluate.report import write_report
    from saescope.sae import load_sae

    if cache_dir is None and model is None:
        raise SaescopeError("evaluation needs activations: give a cache (--acts) or a model")
    saes = {Path(d).name: (str(d), load_sae(d)) for d in sae_dirs}
    for path, sae in saes.values():
        sae_site(sae, path)  # a bad site in cfg.json is refused naming the file, before any work
    cache = open_activations(cache_dir) if cache_dir is not None else None
    for name, (_, sae) in saes.items():
        _check_compatible(name, sae, cache, model)
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
        site = sae_site(sae)
        if cache is not None:
            everything = list(range(len(cache.manifest.shards)))
            held = cache.split(tokens)[1] if tokens < len(cache) else everything
            rows = cache.batches(8192, site, shuffle=False, shards=held)
        else:
            assert model is not None
            rows = _live_rows(model, site, contexts, context)
        batches = torch.stack(contexts).split(2) if contexts else None  # logits: 2 x T x vocab
        results.append(evaluate(sae, rows, model, batches, name, path, ablations=ablations))
    info = {
        "cache": str(cache_dir) if cache_dir else None,
        "model": model.name if model is not None else None,
        "reconstruction tokens": results[0].reconstruction.tokens,
        "loss tokens": results[0].spliced.tokens if results[0].spliced else None,
    }
    return write_report(results, out, info)


def _check_compatible(
    name: str, sae: SAE, cache: ActivationCache | None, model: LanguageModel | None
) -> None:
    site = sae_site(sae)
    model_name = sae.cfg.metadata.model_name
    if cache is not None:
        if model_name and model_name != cache.manifest.model:
            raise SaescopeError(
                f"SAE {name} was trained on {model_name!r}, the cache holds "
                f"{cache.manifest.model!r} activations"
            )
        if cache.d(site) != sae.cfg.d_in:
            raise SaescopeError(
                f"SAE {name} has d_in={sae.cfg.d_in}, the cache's {site} has d={cache.d(site)}"
            )
    if model is not None and model.site_dim(site) != sae.cfg.d_in:
        raise SaescopeError(
            f"SAE {name} has d_in={sae.cfg.d_in}, {site} of {model.name} has "
            f"width {model.site_dim(site)}; was it trained on another model?"
        )


def _live_rows(
    model: LanguageModel, site: str, contexts: list[Tensor], context: ContextConfig
) -> Iterator[Tensor]:
    from saescope.data import keep_mask, special_ids
    from saescope.models import run_with_cache

    exclude = special_ids(model.tokenizer) if context.exclude_special else []
    for batch in torch.stack(contexts).split(8):
        acts = run_with_cache(model, batch, [site])[site]
        yield acts[keep_mask(batch, exclude).to(acts.device)].float().cpu()


def index_features(
    out: str | Path,
    *,
    sae_dir: str | Path | None = None,
    site: str | None = None,
    model: LanguageModel | None = None,
    model_name: str | None = None,
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
    over a cache (``cache_dir``) or the model run live on ``corpus``."""
    from saescope.interpret.batches import cache_batches, live_batches
    from saescope.interpret.index import build_index
    from saescope.interpret.sources import neuron_source, sae_source
    from saescope.models import load_model

    cache = open_activations(cache_dir) if cache_dir is not None else None
    if model is None:
        model = load_model(model_name or (cache.manifest.model if cache else "gemma-3-270m"))
    if sae_dir is not None:
        source = sae_source(sae_dir, site)
        _check_compatible(str(sae_dir), source.sae, cache, model)  # type: ignore[arg-type]
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
