"""fit's step counting, its one-file checkpoints and resume: killed anywhere, it ends where an
uninterrupted run ends."""

import importlib
import json
import logging

import pytest
import safetensors.torch
import torch
from synthetic import Superposition

import saescope._files
from saescope.errors import SaescopeError
from saescope.sae import SAEConfig, build_sae
from saescope.train import OptimConfig, SAETrainer, TrainConfig, fit
from saescope.train import checkpoint as ckpt

DATA = Superposition(d=32, m=128, l0=4)
B = 256


def trainer(steps: int = 20, **cfg) -> SAETrainer:
    sae = build_sae(SAEConfig(d_in=32, d_sae=128, architecture="topk", k=6), seed=0)
    cfg = {"optim": OptimConfig(lr=1e-3, warmup_steps=3), "init_rows": 1024, **cfg}
    return SAETrainer(sae, TrainConfig(tokens=steps * B, batch_size=B, **cfg), name="topk")


def ragged(n: int, short_at: tuple[int, ...]) -> list[torch.Tensor]:
    """``n`` full batches with a short one inserted before each index in ``short_at``."""
    out = []
    for i in range(n):
        if i in short_at:
            out.append(DATA.batch(1000 + i, B // 3))
        out.append(DATA.batch(i, B))
    return out


def killed_after(batches, n: int):
    for i, b in enumerate(batches):
        if i == n:
            raise KeyboardInterrupt
        yield b


def assert_same_weights(a: SAETrainer, b: SAETrainer) -> None:
    for key, value in a.sae.state_dict().items():
        torch.testing.assert_close(b.sae.state_dict()[key], value, rtol=0, atol=0)


def steps_logged(directory) -> list[int]:
    return [json.loads(line)["step"] for line in (directory / "metrics.jsonl").open()]


def test_a_short_batch_mid_stream_does_not_use_up_a_step(tmp_path, caplog) -> None:
    batches = ragged(10, short_at=(4,))  # 11 batches: 10 full, one short
    drawn = []
    t = trainer(steps=10, checkpoint_every=0, log_every=1)
    with caplog.at_level(logging.WARNING):
        fit([t], (drawn.append(1) or b for b in batches), tmp_path, progress=False)
    assert t.step_count == 10 and len(drawn) == 11
    assert "ran out" not in caplog.text
    assert steps_logged(tmp_path / "topk") == list(range(1, 11))
    _, state = ckpt.load_checkpoint(tmp_path / "topk" / "checkpoint")
    assert state["step"] == 10 and state["batches"] == 11
    # the same as training on the full batches alone
    alone = trainer(steps=10, checkpoint_every=0)
    fit([alone], [b for b in batches if len(b) == B], progress=False)
    assert_same_weights(alone, t)


def test_fit_draws_no_batch_past_the_last_step() -> None:
    drawn = []
    fit([trainer(steps=5)], (drawn.append(1) or b for b in DATA.batches(9, B)), progress=False)
    assert len(drawn) == 5


def test_resume_skips_the_short_batches_seen_before(tmp_path) -> None:
    batches = ragged(20, short_at=(3, 7, 15))  # 23 batches
    whole = trainer(checkpoint_every=5, log_every=2)
    fit([whole], batches, tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt):  # after step 12 (14 batches), checkpoint at step 10
        fit(
            [trainer(checkpoint_every=5, log_every=2)],
            killed_after(batches, 14),
            tmp_path / "k",
            progress=False,
        )
    _, state = ckpt.load_checkpoint(tmp_path / "k" / "topk" / "checkpoint")
    assert (state["step"], state["batches"]) == (10, 12)
    resumed = trainer(checkpoint_every=5, log_every=2)
    fit([resumed], batches, tmp_path / "k", resume=True, progress=False)
    assert_same_weights(whole, resumed)
    assert steps_logged(tmp_path / "k" / "topk") == steps_logged(tmp_path / "whole" / "topk")


class WriteFault:
    """write_atomic that raises KeyboardInterrupt at its ``fail_at``-th call (1-based)."""

    # every module that writes a run's files (train.fit is shadowed by the function fit)
    MODULES = tuple(
        importlib.import_module(f"saescope.{name}")
        for name in ("train.checkpoint", "train.fit", "sae.io")
    )

    def __init__(self, monkeypatch, fail_at: int | None) -> None:
        self.calls, self.fail_at = 0, fail_at
        self.real = saescope._files.write_atomic
        for module in self.MODULES:
            monkeypatch.setattr(module, "write_atomic", self)

    def __call__(self, path, data: bytes) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt(f"killed writing {path}")
        self.real(path, data)


def test_a_kill_at_any_write_then_resume_ends_as_an_uninterrupted_run(
    tmp_path, monkeypatch
) -> None:
    def run(directory, resume: bool = False) -> SAETrainer:
        t = trainer(checkpoint_every=5, log_every=3)
        fit([t], DATA.batches(20, B), directory, resume=resume, progress=False)
        return t

    counter = WriteFault(monkeypatch, None)
    whole = run(tmp_path / "whole")
    writes = counter.calls  # config.json, 3 checkpoints in the loop, the final one, the SAE's 3
    assert writes == 8
    expected = steps_logged(tmp_path / "whole" / "topk")
    for n in range(1, writes + 1):
        directory = tmp_path / f"killed-{n}"
        WriteFault(monkeypatch, n)
        with pytest.raises(KeyboardInterrupt):
            run(directory)
        WriteFault(monkeypatch, None)
        resumed = run(directory, resume=ckpt.has_checkpoint(directory / "topk" / "checkpoint"))
        assert_same_weights(whole, resumed)
        assert steps_logged(directory / "topk") == expected, n  # no step twice


def test_a_finished_run_resumes_as_a_no_op(tmp_path) -> None:
    t = trainer(checkpoint_every=5)
    fit([t], DATA.batches(20, B), tmp_path, progress=False)
    again = trainer(checkpoint_every=5)
    drawn = []
    fit(
        [again],
        (drawn.append(1) or b for b in DATA.batches(20, B)),
        tmp_path,
        resume=True,
        progress=False,
    )
    assert len(drawn) == 0 and again.step_count == 20
    assert_same_weights(t, again)


def _to_legacy(directory, state_edit=None) -> None:
    """Rewrite a checkpoint in the two-file layout of earlier versions."""
    tensors, state = ckpt.load_checkpoint(directory)
    state = {k: v for k, v in state.items() if k != "batches"}  # not stored then
    safetensors.torch.save_file(tensors, directory / ckpt.TENSORS)
    (directory / ckpt.LEGACY_STATE).write_text(json.dumps((state_edit or dict)(state)))


def test_a_two_file_checkpoint_still_resumes(tmp_path) -> None:
    whole = trainer(checkpoint_every=5)
    fit([whole], DATA.batches(20, B), tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt):
        fit(
            [trainer(checkpoint_every=5)],
            killed_after(DATA.batches(20, B), 12),
            tmp_path / "k",
            progress=False,
        )
    _to_legacy(tmp_path / "k" / "topk" / "checkpoint")
    resumed = trainer(checkpoint_every=5)
    fit([resumed], DATA.batches(20, B), tmp_path / "k", resume=True, progress=False)
    assert_same_weights(whole, resumed)
    assert not (tmp_path / "k" / "topk" / "checkpoint" / ckpt.LEGACY_STATE).exists()


def test_a_two_file_checkpoint_whose_parts_disagree_is_refused(tmp_path) -> None:
    fit([trainer(checkpoint_every=5)], DATA.batches(10, B), tmp_path, progress=False)
    directory = tmp_path / "topk" / "checkpoint"
    # killed between the two writes: step-10 tensors, the step-5 json
    _to_legacy(directory, lambda state: {**state, "step": 5})
    with pytest.raises(SaescopeError, match=r"says step 5.*stepped \[10\] times.*delete"):
        fit(
            [trainer(checkpoint_every=5)],
            DATA.batches(10, B),
            tmp_path,
            resume=True,
            progress=False,
        )
    (directory / ckpt.TENSORS).unlink()  # a json without its tensors
    with pytest.raises(SaescopeError, match=r"checkpoint.json has no checkpoint.safetensors"):
        fit(
            [trainer(checkpoint_every=5)],
            DATA.batches(10, B),
            tmp_path,
            resume=True,
            progress=False,
        )
    with pytest.raises(SaescopeError, match="--resume"):  # nor is it silently started over
        fit([trainer(checkpoint_every=5)], DATA.batches(10, B), tmp_path, progress=False)


def test_a_truncated_checkpoint_is_refused(tmp_path) -> None:
    fit([trainer(checkpoint_every=5)], DATA.batches(10, B), tmp_path, progress=False)
    path = tmp_path / "topk" / "checkpoint" / ckpt.TENSORS
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SaescopeError, match="damaged"):
        fit(
            [trainer(checkpoint_every=5)],
            DATA.batches(10, B),
            tmp_path,
            resume=True,
            progress=False,
        )


def test_resume_refuses_other_settings_and_names_them(tmp_path) -> None:
    fit([trainer(checkpoint_every=5)], DATA.batches(10, B), tmp_path, progress=False)
    other = trainer(checkpoint_every=5, seed=3, optim=OptimConfig(lr=2e-3, warmup_steps=3))
    with pytest.raises(SaescopeError) as info:
        fit([other], DATA.batches(10, B), tmp_path, resume=True, progress=False)
    message = str(info.value)
    assert "train.optim.lr: saved 0.001, given 0.002" in message
    assert "train.seed: saved 0, given 3" in message and "original arguments" in message
    assert "checkpoint_every" not in message
    # checkpoint_every and log_every may change; config.json then records the new values
    free = trainer(checkpoint_every=2, log_every=7)
    fit([free], DATA.batches(10, B), tmp_path, resume=True, progress=False)
    saved = json.loads((tmp_path / "topk" / "config.json").read_text())
    assert saved["train"]["checkpoint_every"] == 2 and saved["train"]["log_every"] == 7


def test_a_checkpoint_missing_a_part_is_refused(tmp_path) -> None:
    fit([trainer(checkpoint_every=5)], DATA.batches(10, B), tmp_path, progress=False)
    directory = tmp_path / "topk" / "checkpoint"
    tensors, state = ckpt.load_checkpoint(directory)
    del tensors["generator"]
    ckpt.save_checkpoint(directory, tensors, state)
    with pytest.raises(SaescopeError, match=r"lacks \['generator'\]"):
        fit([trainer(checkpoint_every=5)], DATA.batches(10, B), tmp_path, resume=True)


def test_a_second_writer_of_the_run_directory_is_refused(tmp_path) -> None:
    """Two trainings (two --resume, say) into one run directory would interleave checkpoints."""
    with (
        saescope._files.exclusive(tmp_path, "the run directory"),
        pytest.raises(SaescopeError, match="another saescope process"),
    ):
        fit([trainer(steps=2)], ragged(2, ()), tmp_path, progress=False)
    fit([trainer(steps=2)], ragged(2, ()), tmp_path, progress=False)  # released: it runs
