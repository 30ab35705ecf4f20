"""Training objectives, one per architecture, each registered with its ``TrainingRecipe``.

An objective maps (SAE, batch, ``StepContext``) to the loss to minimise and what the trainer
logs; none touches the optimizer. It calls the SAE's own pre-activation and selection code and
adds only losses and straight-through gradients. Not pure: BatchTopK's objective also moves the
SAE's inference threshold (an EMA, all-reduced across data-parallel ranks).

Inputs are already normalised (E||x|| = sqrt(d)). Reconstruction error is reported as FVU, the
fraction of the batch's variance around its mean left unexplained.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from saescope.sae import SAE
from saescope.sae.architectures import BatchTopKSAE, GatedSAE, JumpReLUSAE, MatryoshkaSAE, TopKSAE
from saescope.sae.base import Latents
from saescope.sae.kernels import sparse_decode, topk_coo
from saescope.train.config import DeadMethod
from saescope.train.recipes import StepContext, StepOutput, TrainingRecipe, register_recipe

__all__ = [
    "StepContext",
    "StepOutput",
    "batchtopk_objective",
    "fvu",
    "gated_objective",
    "jumprelu_objective",
    "matryoshka_objective",
    "nested_decode",
    "relu_objective",
    "topk_objective",
]


def fvu(x: Tensor, x_hat: Tensor) -> Tensor:
    """Sum of squared errors over the total variance of ``x`` around its batch mean."""
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)


def _encoder_pre(sae: SAE, x_c: Tensor, ctx: StepContext) -> Tensor:
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


def topk_objective(sae: SAE, x: Tensor, ctx: StepContext) -> StepOutput:
    """Squared error in FVU units + aux_coef * AuxK (Gao et al. 2024): dead latents learn to
    explain the residual the live ones leave."""
    return _topk(sae, x, ctx)[0]


def batchtopk_objective(sae: SAE, x: Tensor, ctx: StepContext) -> StepOutput:
    """TopK's loss over the batch's B * k selection; the inference threshold follows the
    smallest selected activation (an EMA at ``threshold_lr``, the same on every rank)."""
    assert isinstance(sae, BatchTopKSAE)
    out, values = _topk(sae, x, ctx)
    _update_threshold_(sae, values, ctx.cfg.sparsity.threshold_lr)
    return out


def matryoshka_objective(sae: SAE, x: Tensor, ctx: StepContext) -> StepOutput:
    """BatchTopK's step, the squared error averaged over the nested prefixes' reconstructions
    (each prefix decodes only its own latents of the one B * k selection; Bussmann et al. 2025
    sum them, the mean keeps the loss in FVU units so the default LRs still apply). AuxK uses
    the whole dictionary's residual; ``fvu`` is the whole dictionary's, ``fvu_w<w>`` each
    prefix's."""
    assert isinstance(sae, MatryoshkaSAE)
    out, values = _topk(sae, x, ctx, sae.cfg.prefix_widths)
    _update_threshold_(sae, values, ctx.cfg.sparsity.threshold_lr)
    return out


def nested_decode(sae: SAE, latents: Latents, widths: tuple[int, ...]) -> list[Tensor]:
    """Reconstructions (B, d) from the latents below each width in ``widths`` (increasing):
    each group ``[previous width, width)`` is decoded once and added to the prefix before it,
    so all of them cost one decode. Differentiable."""
    B = latents.shape[0]
    out, partial, lo = [], sae.b_dec.expand(B, -1), 0
    for width in widths:
        group = (latents.indices >= lo) & (latents.indices < width)  # keeps rows sorted
        rows, indices, values = latents.rows[group], latents.indices[group], latents.values[group]
        partial = partial + sparse_decode(rows, indices, values, sae.W_dec, B)
        out.append(partial)
        lo = width
    return out


def _topk(
    sae: SAE, x: Tensor, ctx: StepContext, prefixes: tuple[int, ...] = ()
) -> tuple[StepOutput, Tensor]:
    """The TopK-family step and the selected values (N,), detached; with ``prefixes``, the
    squared error is the mean over the nested prefixes' reconstructions (the last: all)."""
    assert isinstance(sae, TopKSAE)
    x = sae.check(x)
    with torch.no_grad():
        pre = _encoder_pre(sae, sae.center(x), ctx)  # (B, d_sae)
    latents = sae.select_from(pre, x)
    x_hats = nested_decode(sae, latents, prefixes) if prefixes else [sae.decode(latents)]
    errors = [_mse_and_fvu(x, x_hat) for x_hat in x_hats]  # [(mse, fvu)] per prefix
    x_hat = x_hats[-1]  # (B, d)
    loss = torch.stack([mse for mse, _ in errors]).mean() / ctx.variance
    metrics = {"fvu": errors[-1][1], "l0": len(latents.values) / len(x)}
    if len(prefixes) > 1:
        metrics |= {f"fvu_w{w}": e for w, (_, e) in zip(prefixes[:-1], errors, strict=False)}
    if ctx.dead_method == "auxk" and ctx.dead.any():
        aux = _auxk(sae, x, x_hat, pre, ctx)
        loss = loss + ctx.cfg.dead.aux_coef * aux
        metrics["auxk"] = float(aux.detach())
    counts = torch.bincount(latents.indices[latents.values > 0], minlength=sae.cfg.d_sae)
    return StepOutput(loss, x_hat.detach(), counts, metrics), latents.values.detach()


def _auxk(sae: TopKSAE, x: Tensor, x_hat: Tensor, pre: Tensor, ctx: StepContext) -> Tensor:
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


def _l1_coef(ctx: StepContext) -> float:
    warm = ctx.cfg.sparsity.l1_warmup
    return ctx.cfg.sparsity.l1_coef * (min(1.0, ctx.progress / warm) if warm > 0 else 1.0)


def relu_objective(sae: SAE, x: Tensor, ctx: StepContext) -> StepOutput:
    """MSE + lambda * sum_i f_i ||W_dec,i|| (Anthropic, April 2024), lambda warmed up.

    Any architecture with a dense ``activation`` trains with it (f = activation(pre))."""
    x_c = sae.center(x)
    pre = sae.pre_acts(x_c)  # (B, d_sae)
    z = sae.activation(pre)  # (B, d_sae)
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


def gated_objective(sae: SAE, x: Tensor, ctx: StepContext) -> StepOutput:
    """MSE + lambda * ||ReLU(pi_gate) * ||W_dec||||_1 + aux reconstruction from the gate path
    through a frozen decoder (Rajamanoharan et al. 2024)."""
    assert isinstance(sae, GatedSAE)
    x_c = sae.center(x)
    pre_gate, pre_mag = sae.gate_and_magnitude(x_c)
    z = sae.combine(pre_gate, pre_mag)  # (B, d_sae)
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


class _JumpReLUSTE(torch.autograd.Function):
    """``JumpReLUSAE.jump(pre, t)``; d/dt by a straight-through estimator with a rectangle
    kernel, scaled by the size of the jump at pre = t, ReLU(t)."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return JumpReLUSAE.jump(pre, threshold)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        near = ((pre - threshold).abs() < eps / 2).to(grad.dtype)
        grad_t = -(threshold.clamp(min=0) / eps) * near * grad
        return grad * JumpReLUSAE.fires(pre, threshold), grad_t.sum(0), None


class _HeavisideSTE(torch.autograd.Function):
    """H for the L0 penalty: 1 where ``JumpReLUSAE.fires``; gradient reaches only the threshold."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return JumpReLUSAE.fires(pre, threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        near = ((pre - threshold).abs() < eps / 2).to(grad.dtype)
        return None, (-(1 / eps) * near * grad).sum(0), None


def jumprelu_objective(sae: SAE, x: Tensor, ctx: StepContext) -> StepOutput:
    """MSE + lambda * L0, both differentiable in the thresholds through the STE
    (Rajamanoharan et al. 2024, Gemma Scope)."""
    assert isinstance(sae, JumpReLUSAE)
    x_c = sae.center(x)
    pre = sae.pre_acts(x_c)
    bandwidth = ctx.cfg.sparsity.bandwidth
    z = _JumpReLUSTE.apply(pre, sae.threshold, bandwidth)  # (B, d_sae)
    x_hat = z @ sae.W_dec + sae.b_dec
    l0 = _HeavisideSTE.apply(pre, sae.threshold, bandwidth).sum(-1).mean()
    loss = _mse(x, x_hat) + ctx.cfg.sparsity.l0_coef * l0
    metrics = {"fvu": float(fvu(x, x_hat.detach())), "l0": float(l0.detach())}
    loss = loss + _ghost(sae, x, x_hat, pre, ctx, metrics)
    return StepOutput(loss, x_hat.detach(), (z > 0).sum(0), metrics)


def _ghost(
    sae: SAE, x: Tensor, x_hat: Tensor, pre: Tensor, ctx: StepContext, metrics: dict[str, float]
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


# The training half of each built-in architecture (``saescope.sae.architectures``).
_AUXK: tuple[DeadMethod, ...] = ("auxk",)
_GHOST: tuple[DeadMethod, ...] = ("ghost",)
register_recipe("topk", TrainingRecipe(topk_objective, "auxk", _AUXK))
register_recipe("batchtopk", TrainingRecipe(batchtopk_objective, "auxk", _AUXK))
register_recipe("matryoshka", TrainingRecipe(matryoshka_objective, "auxk", _AUXK))
register_recipe("jumprelu", TrainingRecipe(jumprelu_objective, "ghost", _GHOST))
register_recipe("relu", TrainingRecipe(relu_objective, "ghost", _GHOST))
register_recipe("gated", TrainingRecipe(gated_objective, "ghost", _GHOST))
