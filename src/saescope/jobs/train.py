"""Train SAEs from a cache or a live model, then score them on the held-out rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, get_args, get_type_hints

import torch
from torch import Tensor

from saescope._dist import Rank, init_distributed
from saescope._files import strict_json
from saescope.activations import ActivationCache, open_activations, stream_activations
from saescope.activations.outliers import OutlierPolicy
from saescope.data import ContextConfig, Corpus, load_corpus
from saescope.errors import SaescopeError
from saescope.evaluate import ReconstructionStats, reconstruction_stats
from saescope.models import LanguageModel, Site, load_model
from saescope.models.loading import cpu_has_fast_bf16, resolve_device
from saescope.sae import ARCHITECTURES, SAE, SAEConfig, SAEMetadata, build_sae
from saescope.train import SAETrainer, TrainConfig, fit, sae_seed

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
        if arch not in ARCHITECTURES:
            raise SaescopeError(
                f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}"
            )
        needs_k = ARCHITECTURES[arch].needs_k
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
        # Each SAE its own seed: with the run's one seed, widths would share their first rows.
        sae = build_sae(sae_cfg, seed=sae_seed(cfg.seed, spec.name)).to(device)
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
    outliers: OutlierPolicy = OutlierPolicy(),
) -> list[TrainedSAE]:
    """Train ``specs`` on a cache (the last shards held out) with ``outliers`` applied to the
    training rows, then score them on the held-out rows (all of them)."""
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
    rule = cache.outlier_rule(outliers, site)
    # In the SAE's metadata: the SAE records what it was trained on, and a resume with
    # another policy is refused with the other changed settings (fit compares configs).
    metadata = replace(metadata_from_cache(cache, site), extra={"outliers": rule.to_dict()})
    trainers = _trainers(specs, cache.d(site), cfg, metadata, torch.device(device))
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
        outliers=outliers,
    )
    log.info("outlier rows: %s", rule.to_dict())
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
    outliers: OutlierPolicy = OutlierPolicy(),
) -> list[TrainedSAE]:
    """Train on activations streamed from the model (no cache); one pass over the corpus;
    ``outliers`` measures its median norm on the first forward's rows."""
    parsed = model.site(site)
    metadata = SAEMetadata(
        model_name=model.name,
        hook_name=parsed.tl_name,
        site=parsed.name,
        context_size=context.context_size,
        prepend_bos=context.prepend_bos,
        exclude_special_tokens=context.exclude_special,
        dataset_path=corpus.name,
        extra={"outliers": asdict(outliers)},  # live, the median is the first batch's
    )
    trainers = _trainers(specs, model.site_dim(parsed), cfg, metadata, torch.device(device))
    batches = stream_activations(
        model, parsed, cfg.batch_size, corpus, context, seed=cfg.seed, outliers=outliers
    )
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
        verdict = trainer.undertrained()  # the rule of saescope.train.undertrained
        summary[trainer.name] = {
            "heldout": stats.to_dict() if stats else None,
            "train_tokens": trainer.tracker.tokens,
            "dead_fraction_train": float(trainer.tracker.dead.float().mean()),
            "undertrained": None if verdict is None else verdict.to_dict(),
        }
    (out / "summary.json").write_text(strict_json(summary))
    return results


_RESOLVED = ("tokens", "encoder_dtype")  # TrainConfig fields that train_saes works out itself


def train_saes(
    out: str | Path,
    *,
    cache_dir: str | Path | None = None,
    model: LanguageModel | str | None = None,
    site: str | None = None,
    corpus: Corpus | None = None,
    context: ContextConfig = ContextConfig(),
    architectures: Sequence[str] = ("topk",),
    widths: Sequence[int] = (),
    expansion: Sequence[int] = (16,),
    ks: Sequence[int] = (32,),
    b_dec_input: bool = True,
    tokens: int | None = None,
    epochs: int = 1,
    holdout_rows: int = 0,
    encoder_dtype: str = "auto",
    model_dtype: str = "auto",
    device: str | torch.device = "auto",
    resume: bool = False,
    progress: bool = True,
    log_to: Sequence[str] = (),
    outliers: OutlierPolicy = OutlierPolicy(),
    **settings: Any,
) -> list[TrainedSAE]:
    """Train every combination of ``architectures`` x widths x ``ks`` from one pass over the
    data: a cache (``cache_dir``, its last ``holdout_rows`` rows kept out and scored) or, without
    one, activations streamed live from ``model`` (a loaded model or a name loaded with
    ``model_dtype``) at ``site`` over ``corpus`` (None: the default corpus).

    What the data decides is resolved here: the site (with a cache, its only one unless
    ``site`` names one), the widths (``widths``, else ``expansion`` x the site's width), the
    tokens (``tokens``, else ``epochs`` passes over the cache's training rows; live training
    needs ``tokens``), the encoder dtype (``auto``: bfloat16 on CUDA and on CPUs with native
    bf16 matmul, else float32) and, under torchrun, each rank's share of the tokens (the batch
    size is per rank). ``settings`` are the other ``TrainConfig`` fields (``batch_size``,
    ``seed``, ``optim=OptimConfig(...)``, ...). ``outliers``: what training does with huge-norm
    rows (``saescope.activations.outliers``). Returns the trained SAEs (none on ranks > 0).
    """
    allowed = [f.name for f in fields(TrainConfig) if f.name not in _RESOLVED]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise SaescopeError(
            f"unknown training setting(s) {', '.join(unknown)}; expected TrainConfig fields "
            f"among {', '.join(allowed)}"
        )
    if tokens is not None and tokens < 1:  # 0 would read as "not given" below
        raise SaescopeError(f"tokens must be >= 1 (or None: epochs over the cache), got {tokens}")
    if epochs < 1 or holdout_rows < 0:
        raise SaescopeError(f"need epochs >= 1 and holdout_rows >= 0, got {epochs}, {holdout_rows}")
    dev = resolve_device(device)  # auto: cuda:<local rank> or cpu
    if cache_dir is None and model is None:
        raise SaescopeError("give a cache (--acts CACHE) or a model and a site (live training)")
    rank = init_distributed()  # under torchrun: data-parallel
    if cache_dir is not None:
        cache = open_activations(cache_dir)
        site = cache.site(site)
        d_in = cache.d(site)
        total = tokens or epochs * cache.rows_in(cache.split(holdout_rows)[0])
    else:
        if site is None or not tokens:
            raise SaescopeError("live training (--model) needs --site and --tokens")
        if isinstance(model, str):
            model = load_model(model, dtype=model_dtype, device=dev)
        assert model is not None
        d_in, total = model.site_dim(site), tokens
    specs = sweep(
        architectures, list(widths) or [e * d_in for e in expansion], ks, b_dec_input=b_dec_input
    )
    cfg = TrainConfig(
        tokens=total // rank.world_size,
        encoder_dtype=_encoder_dtype(encoder_dtype, dev),  # type: ignore[arg-type]
        **settings,
    )
    if cache_dir is not None:
        return train_from_cache(
            cache_dir, out, specs, cfg, site=site, holdout_rows=holdout_rows, device=dev,
            resume=resume, progress=progress, log_to=log_to, outliers=outliers,
        )  # fmt: skip
    assert isinstance(model, LanguageModel) and site is not None
    return train_live(
        model, site, corpus if corpus is not None else load_corpus(), context, out, specs, cfg,
        device=dev, resume=resume, progress=progress, log_to=log_to, outliers=outliers,
    )  # fmt: skip


def _encoder_dtype(choice: str, device: torch.device) -> str:
    choices = get_args(get_type_hints(TrainConfig)["encoder_dtype"])
    if choice != "auto" and choice not in choices:
        raise SaescopeError(
            f"encoder dtype {choice!r}: expected auto or one of {', '.join(choices)}"
        )
    if choice != "auto":
        return choice
    fast = device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16())
    return "bfloat16" if fast else "float32"
