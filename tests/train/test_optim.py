"""The memory-order Adam against torch's, and the learning-rate schedule."""

import pytest
import torch
from torch import nn

from saescope.sae import SAEConfig, build_sae
from saescope.train import OptimConfig, SAETrainer, TrainConfig
from saescope.train.optim import Adam


def test_adam_matches_torch_adam_on_column_major_and_plain_parameters() -> None:
    g = torch.Generator().manual_seed(0)
    W = nn.Parameter(torch.randn(24, 8, generator=g).t())  # (8, 24) stored column-major
    b = nn.Parameter(torch.randn(24, generator=g))
    assert not W.is_contiguous()
    ref = [nn.Parameter(p.detach().clone()) for p in (W, b)]
    ours = Adam([W, b], lr=1e-2, betas=(0.9, 0.99))
    theirs = torch.optim.Adam(ref, lr=1e-2, betas=(0.9, 0.99))
    for step in range(20):
        for group in (*ours.param_groups, *theirs.param_groups):
            group["lr"] = 1e-2 * (step + 1) / 20  # a schedule set between steps, as fit does
        grads = [torch.randn(p.shape, generator=g) for p in ref]
        for params, optimizer in (((W, b), ours), (ref, theirs)):
            optimizer.zero_grad()
            for p, grad in zip(params, grads, strict=True):
                p.grad = grad.clone()
            optimizer.step()
    torch.testing.assert_close(W, ref[0])
    torch.testing.assert_close(b, ref[1])
    assert W.stride() == (1, 8)  # still column-major: the alias stepped it in place
    exp_avg, exp_avg_sq = ours.moments(W)
    torch.testing.assert_close(exp_avg, theirs.state[ref[0]]["exp_avg"])
    torch.testing.assert_close(exp_avg_sq, theirs.state[ref[0]]["exp_avg_sq"])


def _trainer(steps: int, warmup: int, decay_start: float) -> SAETrainer:
    sae = build_sae(SAEConfig(d_in=8, d_sae=16, architecture="topk", k=2), seed=0)
    optim = OptimConfig(lr=1e-3, warmup_steps=warmup, decay_start=decay_start)
    return SAETrainer(sae, TrainConfig(tokens=steps * 4, batch_size=4, init_rows=4, optim=optim))


def test_lr_warms_up_stays_constant_then_decays_linearly_to_zero() -> None:
    t = _trainer(steps=100, warmup=10, decay_start=0.8)
    factor = [t.lr_factor(s) for s in range(101)]
    assert factor[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])  # linear warm-up
    assert factor[10:80] == [1.0] * 70  # constant
    assert factor[80:] == pytest.approx([(100 - s) / 20 for s in range(80, 101)])  # linear decay
    assert factor[99] > 0 and factor[100] == 0  # reaches 0 where training ends


def test_lr_schedule_edges() -> None:
    assert [_trainer(10, 0, 1.0).lr_factor(s) for s in range(10)] == [1.0] * 10  # no warm-up
    overlap = _trainer(10, 20, 0.5)  # warm-up longer than the run: both factors apply
    assert overlap.lr_factor(7) == pytest.approx(8 / 20 * 3 / 5)


def test_each_step_uses_the_scheduled_lr() -> None:
    t = _trainer(steps=10, warmup=4, decay_start=0.5)
    t.initialise(torch.randn(4, 8))
    seen = []
    for _ in range(10):
        t.step(torch.randn(4, 8))
        seen.append(t.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([1e-3 * t.lr_factor(s) for s in range(10)])
