"""The undertrained warning: a run still improving fast before its LR decay is named, with the
numbers and what to do; one that has levelled off is not; the verdict survives a resume."""

import logging

import pytest
from synthetic import Superposition

from saescope.sae import SAEConfig, build_sae
from saescope.train import OptimConfig, SAETrainer, TrainConfig, fit
from saescope.train.undertrained import FALL

DATA = Superposition(d=32, m=64, l0=3)
B = 256


def trainer(steps: int, lr: float, warmup: int = 5) -> SAETrainer:
    sae = build_sae(SAEConfig(d_in=32, d_sae=128, architecture="topk", k=6), seed=0)
    optim = OptimConfig(lr=lr, warmup_steps=warmup)
    cfg = TrainConfig(tokens=steps * B, batch_size=B, optim=optim, init_rows=1024)
    return SAETrainer(sae, cfg, name="topk")


def test_a_run_still_improving_fast_is_named_with_its_numbers(caplog) -> None:
    t = trainer(steps=40, lr=3e-3)  # 40 steps: the FVU is still falling steeply
    with caplog.at_level(logging.WARNING):
        fit([t], DATA.batches(40, B), progress=False)
    verdict = t.undertrained()
    assert verdict is not None and verdict.fall > FALL
    assert verdict.steps == (20, 24, 28, 32)  # decay from step 32; tenths of 4 steps
    assert "topk looks undertrained" in caplog.text
    assert f"{verdict.fvu_early:.4f}" in caplog.text and "--epochs" in caplog.text


def test_a_run_that_levelled_off_is_not(caplog) -> None:
    t = trainer(steps=200, lr=1e-2)  # the FVU falls ~5% over the rule's fifth of training
    with caplog.at_level(logging.WARNING):
        fit([t], DATA.batches(200, B), progress=False)
    assert t.undertrained() is None
    assert "undertrained" not in caplog.text


def test_a_run_too_short_to_judge_is_not_called_undertrained() -> None:
    t = trainer(steps=20, lr=3e-3, warmup=15)  # the early window would be in the warm-up
    fit([t], DATA.batches(20, B), progress=False)
    assert t.undertrained() is None


def test_the_verdict_survives_a_checkpoint(tmp_path) -> None:
    t = trainer(steps=40, lr=3e-3)
    fit([t], DATA.batches(30, B), progress=False)  # stopped inside the late window
    tensors, state = t.checkpoint_state()
    resumed = trainer(steps=40, lr=3e-3)
    resumed.restore(tensors, state)
    for i in range(30, 40):
        t.step(DATA.batch(i, B))
        resumed.step(DATA.batch(i, B))
    verdict, again = t.undertrained(), resumed.undertrained()
    assert verdict is not None and again is not None
    assert again.fvu_early == verdict.fvu_early  # its window was before the checkpoint
    assert again.fall == pytest.approx(verdict.fall, rel=1e-3)
