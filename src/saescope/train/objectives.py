"""Training objectives, one per architecture: pure functions of (SAE, batch, context).

Inputs are already normalised (E||x|| = sqrt(d)). Each returns the loss to minimise and what the
trainer logs; none touches the optimizer. Reconstruction error is reported as FVU, the fraction
of the batch's variance around its mean left unexplained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

from saescope.sae import SAE
from saescope.sae.architectures import BatchTopKSAE, GatedSAE, JumpReLUSAE, TopKSAE
from saescope.sae.kernels import sparse_decode, topk_coo
from saescope.train.config import TrainConfig


@dataclass(frozen=True)
class Context:
    """What an objective may know about the run besides the batch."""

    cfg: TrainConfig
    dead: Tensor
    """(d_sae,) bool: latents that have not fired within the dead window."""
    progress: float
    """Fraction of training done, in [0, 1)."""
    dead_method: str
    variance: float = 1.0
    """E||x - mean||^2 of the (normalised) initialisation sample: the fixed denominator that
    turns squared error into FVU units. Fixed, not per batch, so that the loss is a mean over
    rows and data-parallel ranks average to exactly the single-process gradient."""
    workspace: dict[str, Tensor] = field(default_factory=dict)
    """Buffers the trainer keeps from step to step (the (B, d_sae) pre-activations): writing
    into last step's memory spares the page faults of a fresh 100+ MB allocation."""


class StepOutput(NamedTuple):
    loss: Tensor
    """Scalar to backpropagate."""
    x_hat: Tensor
    """(B, d) reconstruction, detached."""
    counts: Tensor
    """(d_sae,) rows of the batch on which each latent fired."""
    metrics: dict[str, float]
    """fvu, l0 and the architecture's own terms."""


def fvu(x: Tensor, x_hat: Tensor) -> Tensor:
    """Sum of squared errors over the total variance of ``x`` around its batch mean."""
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)


def _encoder_pre(sae: SAE, x_c: Tensor, ctx: Context) -> Tensor:
    """Dense pre-activations (B, d_sae) without autograd, in the encoder dtype.

    With bf16 the matmul runs ~4x faster on CPUs with AVX512-BF16 and the pre-activations stay
    bf16 for the selection (half the memory traffic); the chosen values are gathered back to
    float32 and gradients are exact float32. The bias is added after the matmul, in place:
    ``addmm`` would first copy it into every row of the output.
    """
    W_enc: Tensor = sae.W_enc
    b_enc: Tensor = sae.b_enc
    if ctx.cfg.encoder_dtype == "bfloat16":
        x_c, W_enc, b_enc = x_c.bfloat16(), W_enc.bfloat16(), b_enc.bfloat16()
    out = ctx.workspace.get("pre")
    shape = (len(x_c), W_enc.shape[1])
    if out is None or out.shape != shape or out.dtype != x_c.dtype or out.device != x_c.device:
        out = ctx.workspace["pre"] = x_c.new_empty(shape)
    with torch.no_grad():
        return torch.mm(x_c, W_enc, out=out).add_(b_enc)


def topk_objective(sae: SAE, x: Tensor, ctx: Context) -> StepOutput:
    """Squared error in FVU units + aux_coef * AuxK (Gao et al. 2024): dead latents learn to
    explain the residual the live ones leave."""
    assert isinstance(sae, TopKSAE)
    x = sae.check(x)
    with torch.no_grad():
        pre = _encoder_pre(sae, sae.center(x), ctx)  # (B, d_sae)
    latents = sae.select_from(pre, x)
    x_hat = sae.decode(latents)  # (B, d)
    mse, batch_fvu = _mse_and_fvu(x, x_hat)
    loss = mse / ctx.variance
    metrics = {"fvu": batch_fvu, "l0": len(latents.values) / len(x)}
    if isinstance(sae, BatchTopKSAE):
        _update_threshold_(sae, latents.values, ctx.cfg.sparsity.threshold_lr)
    if ctx.dead_method == "auxk" and ctx.dead.any():
        aux = _auxk(sae, x, x_hat, pre, ctx)
        loss = loss + ctx.cfg.dead.aux_coef * aux
        metrics["auxk"] = float(aux.detach())
    counts = torch.bincount(latents.indices[latents.values > 0], minlength=sae.cfg.d_sae)
    return StepOutput(loss, x_hat.detach(), counts, metrics)


def _auxk(sae: TopKSAE, x: Tensor, x_hat: Tensor, pre: Tensor, ctx: Context) -> Tensor:
    dead = ctx.dead.nonzero().squeeze(1)
    k_aux = min(ctx.cfg.dead.aux_k or sae.cfg.d_in // 2, len(dead))
    # The top k_aux among the dead latents only: a (B, n_dead) slice, not a masked (B, d_sae) copy.
    rows, columns = topk_coo(pre.index_select(1, dead), k_aux)
    indices = dead[columns]
    values = sae.gather(pre, x, rows, indices).relu()
    e = (x - x_hat).detach()  # the residual the live latents left
    e_hat = sparse_decode(rows, indices, values, sae.W_dec, len(x))
    return fvu(e, e_hat)


@torch.no_grad()
def _update_threshold_(sae: BatchTopKSAE, values: Tensor, rate: float) -> None:
    positive = values[values > 0]
    smallest = positive.min() if len(positive) else values.new_tensor(float("inf"))
    if dist.is_available() and dist.is_initialized():  # the same threshold on every rank
        dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
    if torch.isfinite(smallest):
        current = sae.threshold[0]
        sae.threshold.fill_(float((1 - rate) * current + rate * smallest))


def _mse(x: Tensor, x_hat: Tensor) -> Tensor:
    return (x - x_hat).pow(2).sum(-1).mean()


def _mse_and_fvu(x: Tensor, x_hat: Tensor) -> tuple[Tensor, float]:
    """The mean squared error per row (differentiable) and the batch's FVU, from one pass."""
    sse = (x - x_hat).pow(2).sum(-1)  # (B,)
    total = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
    return sse.mean(), float(sse.detach().sum() / total)


def _l1_coef(ctx: Context) -> float:
    warm = ctx.cfg.sparsity.l1_warmup
    return ctx.cfg.sparsity.l1_coef * (min(1.0, ctx.progress / warm) if warm > 0 else 1.0)


def relu_objective(sae: SAE, x: Tensor, ctx: Context) -> StepOutput:
    """MSE + lambda * sum_i f_i ||W_dec,i|| (Anthropic, April 2024), lambda warmed up."""
    x_c = sae.center(x)
    pre = sae.pre_acts(x_c)  # (B, d_sae)
    z = pre.relu()
    x_hat = z @ sae.W_dec + sae.b_dec
    l1 = (z * sae.W_dec.norm(dim=1)).sum(-1).mean()
    mse = _mse(x, x_hat)
    loss = mse + _l1_coef(ctx) * l1
    metrics = {
        "fvu": float(fvu(x, x_hat.detach())),
        "l0": float((z > 0).float().sum(-1).mean()),
        "l1": float(l1.detach()),
    }
    loss = loss + _ghost(sae, x, x_hat, pre, ctx, metrics)
    return StepOutput(loss, x_hat.detach(), (z > 0).sum(0), metrics)


def gated_objective(sae: SAE, x: Tensor, ctx: Context) -> StepOutput:
    """MSE + lambda * ||ReLU(pi_gate) * ||W_dec||||_1 + aux reconstruction from the gate path
    through a frozen decoder (Rajamanoharan et al. 2024)."""
    assert isinstance(sae, GatedSAE)
    x_c = sae.center(x)
    pre_gate, pre_mag = sae.gate_and_magnitude(x_c)
    z = (pre_gate > 0) * pre_mag.relu()
    x_hat = z @ sae.W_dec + sae.b_dec
    gate = pre_gate.relu()
    l1 = (gate * sae.W_dec.norm(dim=1)).sum(-1).mean()
    aux = _mse(x, gate @ sae.W_dec.detach() + sae.b_dec.detach())
    loss = _mse(x, x_hat) + _l1_coef(ctx) * l1 + aux
    metrics = {
        "fvu": float(fvu(x, x_hat.detach())),
        "l0": float((z > 0).float().sum(-1).mean()),
        "l1": float(l1.detach()),
        "gate_aux": float(aux.detach()),
    }
    loss = loss + _ghost(sae, x, x_hat, pre_gate, ctx, metrics)
    return StepOutput(loss, x_hat.detach(), (z > 0).sum(0), metrics)


class _JumpReLU(torch.autograd.Function):
    """pre * H(pre - t); d/dt by a straight-through estimator with a rectangle kernel."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        near = ((pre - threshold).abs() < eps / 2).to(grad.dtype)
        grad_t = -(threshold / eps) * near * grad
        return grad * (pre > threshold), grad_t.sum(0), None


class _Step(torch.autograd.Function):
    """H(pre - t) for the L0 penalty; gradient reaches only the threshold."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        near = ((pre - threshold).abs() < eps / 2).to(grad.dtype)
        return None, (-(1 / eps) * near * grad).sum(0), None


def jumprelu_objective(sae: SAE, x: Tensor, ctx: Context) -> StepOutput:
    """MSE + lambda * L0, both differentiable in the thresholds through the STE
    (Rajamanoharan et al. 2024, Gemma Scope)."""
    assert isinstance(sae, JumpReLUSAE)
    x_c = sae.center(x)
    pre = sae.pre_acts(x_c)
    bandwidth = ctx.cfg.sparsity.bandwidth
    z = _JumpReLU.apply(pre, sae.threshold, bandwidth)
    x_hat = z @ sae.W_dec + sae.b_dec
    l0 = _Step.apply(pre, sae.threshold, bandwidth).sum(-1).mean()
    loss = _mse(x, x_hat) + ctx.cfg.sparsity.l0_coef * l0
    metrics = {"fvu": float(fvu(x, x_hat.detach())), "l0": float(l0.detach())}
    loss = loss + _ghost(sae, x, x_hat, pre, ctx, metrics)
    return StepOutput(loss, x_hat.detach(), (z > 0).sum(0), metrics)


def _ghost(
    sae: SAE, x: Tensor, x_hat: Tensor, pre: Tensor, ctx: Context, metrics: dict[str, float]
) -> Tensor:
    """Ghost grads with the GDM rescaling: dead latents, through exp(min(pre, 0)), fit half the
    residual; the term is scaled to the main MSE and by the dead fraction."""
    if ctx.dead_method != "ghost" or not ctx.dead.any():
        return x.new_zeros(())
    residual = (x - x_hat).detach()  # (B, d)
    ghost = pre[:, ctx.dead].clamp(max=0).exp() @ sae.W_dec[ctx.dead]  # (B, d)
    scale = residual.norm(dim=-1, keepdim=True) / (2 * ghost.norm(dim=-1, keepdim=True) + 1e-8)
    ghost = ghost * scale.detach()
    mse_ghost = (ghost - residual).pow(2).sum(-1)  # (B,)
    mse_main = residual.pow(2).sum(-1)
    term = (mse_ghost * (mse_main / mse_ghost.clamp_min(1e-12)).detach()).mean()
    term = term * ctx.dead.float().mean()
    metrics["ghost"] = float(term.detach())
    return term


Objective = Callable[[SAE, Tensor, Context], StepOutput]

OBJECTIVES: dict[str, Objective] = {
    "topk": topk_objective,
    "batchtopk": topk_objective,
    "relu": relu_objective,
    "gated": gated_objective,
    "jumprelu": jumprelu_objective,
}

DEFAULT_DEAD_METHOD = {
    "topk": "auxk",
    "batchtopk": "auxk",
    "relu": "ghost",
    "gated": "ghost",
    "jumprelu": "ghost",
}
