"""Training configuration: one frozen dataclass, nested per concern, saved next to every run."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from saescope.errors import SaescopeError

DeadMethod = Literal["auxk", "resample", "ghost", "none"]
EncoderDtype = Literal["float32", "bfloat16"]
DecoderNorm = Literal["unit", "at_most_one"]


def _check(ok: bool, name: str, expected: str, value: object) -> None:
    if not ok:
        raise SaescopeError(f"{name} must be {expected}, got {value!r}")


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _count(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def sae_seed(seed: int, name: str) -> int:
    """The seed of one SAE of a run: a hash of the run's ``seed`` and the SAE's ``name``
    (``topk-w8192-k32``), the same on every rerun, rank and resume. One seed for every SAE of
    a sweep would start them from the same random numbers (the rows of a narrow decoder the
    first rows of a wide one), and matching features across widths would find the seed."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: any torch seed, any JSON reader


LR_FLAT_FROM = 2048
"""Widths from which the default LR stops falling (``default_lr``)."""


def default_lr(d_sae: int) -> float:
    """8e-4 / sqrt(min(d_sae, 2048) / 2^14): the width scaling of Gao et al. (2024) at 4x
    their base rate, flat from width 2048 on.

    4x: on the default model's layer 6 (1M tokens, width 8192, k 32) it gave held-out FVU 0.067
    against 0.155 at their 2e-4. Flat: their 1/sqrt(width) holds for runs trained to
    convergence, and at the token counts saescope trains on (about one epoch of a cache, not
    enough for a wide SAE to converge) it starved the wide SAEs: on layer 6 at 533k tokens, k 32,
    widths 2048 / 8192 / 32768 reached held-out FVU 0.082 / 0.094 / 0.147 with it, and 32768
    reached 0.067 at 2048's LR, though with more latents dead (benchmarks/width_scaling.md)."""
    return 8e-4 / math.sqrt(min(d_sae, LR_FLAT_FROM) / 2**14)


@dataclass(frozen=True)
class OptimConfig:
    """Adam, LR warm-up then constant, then linear decay to zero over the last part."""

    lr: float | None = None
    """None: ``default_lr(d_sae)``."""
    betas: tuple[float, float] = (0.9, 0.999)
    """beta1 = 0 is a documented good choice for SAEs (Anthropic); 0.9 is the safe default."""
    warmup_steps: int = 50
    decay_start: float = 0.8
    """Fraction of training after which the LR decays linearly to 0 (1.0: no decay)."""
    grad_clip: float | None = 1.0
    """Max gradient norm; None disables clipping."""

    def __post_init__(self) -> None:
        lr, clip = self.lr, self.grad_clip
        _check(lr is None or (_finite(lr) and lr > 0), "lr", "a finite number > 0 (or None)", lr)
        _check(
            len(self.betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in self.betas),
            "betas",
            "two numbers in [0, 1) (beta1, beta2)",
            self.betas,
        )
        _check(_count(self.warmup_steps, 0), "warmup_steps", "an integer >= 0", self.warmup_steps)
        _check(
            _finite(self.decay_start) and 0 < self.decay_start <= 1,
            "decay_start",
            "in (0, 1]",
            self.decay_start,
        )
        _check(
            clip is None or (_finite(clip) and clip > 0),
            "grad_clip",
            "a finite number > 0 (or None)",
            clip,
        )


@dataclass(frozen=True)
class SparsityConfig:
    """Architecture-specific sparsity terms (each architecture reads only its own)."""

    l1_coef: float = 5.0
    """relu / gated: L1 penalty on latents weighted by decoder norms (inputs normalised)."""
    l1_warmup: float = 0.05
    """relu / gated: fraction of training over which the L1 coefficient ramps up from 0."""
    l0_coef: float = 1.0
    """jumprelu: L0 penalty coefficient."""
    bandwidth: float = 0.05
    """jumprelu: width of the rectangle kernel of the straight-through estimator."""
    threshold_lr: float = 0.01
    """batchtopk: EMA rate of the inference threshold (min selected pre-activation)."""

    def __post_init__(self) -> None:
        for name in ("l1_coef", "l0_coef"):
            value = getattr(self, name)
            _check(_finite(value) and value >= 0, name, "a finite number >= 0", value)
        w, bw, rate = self.l1_warmup, self.bandwidth, self.threshold_lr
        _check(_finite(w) and 0 <= w <= 1, "l1_warmup", "in [0, 1]", w)
        _check(_finite(bw) and bw > 0, "bandwidth", "a finite number > 0", bw)
        _check(_finite(rate) and 0 < rate <= 1, "threshold_lr", "in (0, 1]", rate)


@dataclass(frozen=True)
class DeadConfig:
    """Keeping latents alive."""

    method: DeadMethod | None = None
    """None: the architecture's ``recipe_for(arch).default_dead_method`` (auxk for topk/batchtopk,
    ghost for relu/gated/jumprelu); one it cannot use (auxk on relu) is refused."""
    window_tokens: int | None = None
    """A latent that has not fired for this many tokens counts as dead (None: a quarter of the
    training tokens, at most 1M, so that short runs get dead-latent help too)."""
    aux_k: int | None = None
    """auxk: dead latents used in the auxiliary reconstruction (None: d_in // 2)."""
    aux_coef: float = 1 / 32
    resample_every: int = 2_000
    """resample: steps between resamplings."""

    def __post_init__(self) -> None:
        methods = get_args(DeadMethod)
        _check(
            self.method is None or self.method in methods,
            "dead method",
            f"one of {methods}",
            self.method,
        )
        for name in ("window_tokens", "aux_k"):
            value = getattr(self, name)
            _check(value is None or _count(value, 1), name, "an integer >= 1 (or None)", value)
        coef = self.aux_coef
        _check(_finite(coef) and coef >= 0, "aux_coef", "a finite number >= 0", coef)
        _check(
            _count(self.resample_every, 1), "resample_every", "an integer >= 1", self.resample_every
        )


@dataclass(frozen=True)
class TrainConfig:
    """How to train one SAE (the SAE's shape is its own SAEConfig)."""

    tokens: int
    """Training tokens (rows); steps = tokens // batch_size."""
    batch_size: int = 4096
    """Rows per step (per rank under torchrun)."""
    seed: int = 0
    """Seeds the cache's batch order and, through ``sae_seed(seed, name)``, each SAE's
    initialisation and its trainer's own generator: the SAEs of one sweep start independently."""
    normalize: bool = True
    """Scale inputs so that E||x|| = sqrt(d_in); folded into the weights when saving."""
    init_rows: int = 16_384
    """Rows used to estimate the scale and the geometric median that initialises b_dec."""
    encoder_dtype: EncoderDtype = "float32"
    """dtype of the dense encoder matmul that selects latents (bf16 is ~4x faster on CPUs
    with AVX512-BF16 and GPUs); gradients are always computed in float32."""
    decoder_norm: DecoderNorm = "unit"
    """Decoder rows kept at norm 1 (the radial gradient component removed before each step), or
    only projected back when they grow past 1. Ignored for relu, whose L1 penalty is weighted by
    decoder norms instead."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    dead: DeadConfig = field(default_factory=DeadConfig)
    checkpoint_every: int = 500
    """Steps between checkpoints (0: only at the end)."""
    log_every: int = 25

    def __post_init__(self) -> None:
        _check(_count(self.batch_size, 1), "batch_size", "an integer >= 1", self.batch_size)
        _check(_count(self.tokens, 1), "tokens", "an integer >= 1", self.tokens)
        if self.tokens < self.batch_size:
            raise SaescopeError(
                f"tokens ({self.tokens}) must be at least one batch ({self.batch_size})"
            )
        _check(_count(self.init_rows, 1), "init_rows", "an integer >= 1", self.init_rows)
        _check(_count(self.seed, 0), "seed", "an integer >= 0", self.seed)
        for name in ("checkpoint_every", "log_every"):
            least = 0 if name == "checkpoint_every" else 1
            _check(
                _count(getattr(self, name), least),
                name,
                f"an integer >= {least}",
                getattr(self, name),
            )
        for name, kind in (("encoder_dtype", EncoderDtype), ("decoder_norm", DecoderNorm)):
            _check(
                getattr(self, name) in get_args(kind),
                name,
                f"one of {get_args(kind)}",
                getattr(self, name),
            )

    @property
    def steps(self) -> int:
        return self.tokens // self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        nested = {"optim": OptimConfig, "sparsity": SparsityConfig, "dead": DeadConfig}
        kwargs = {k: nested[k](**v) if k in nested else v for k, v in data.items()}
        if "optim" in data:
            kwargs["optim"] = OptimConfig(
                **{**data["optim"], "betas": tuple(data["optim"]["betas"])}
            )
        return cls(**kwargs)
