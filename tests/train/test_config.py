"""Training configs refuse bad values; the CLI turns them, and a resume with other settings,
into one clear line and exit code 2."""

import json

import pytest

from saescope import cli
from saescope.activations import capture
from saescope.data import ContextConfig
from saescope.errors import SaescopeError
from saescope.train import DeadConfig, OptimConfig, SparsityConfig, TrainConfig


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: OptimConfig(lr=-1.0), r"lr must be a finite number > 0 \(or None\), got -1.0"),
        (lambda: OptimConfig(lr=float("nan")), "lr must be a finite number > 0.*got nan"),
        (lambda: OptimConfig(lr=0.0), "lr must be"),
        (lambda: OptimConfig(betas=(1.0, 0.999)), r"betas must be two numbers in \[0, 1\)"),
        (lambda: OptimConfig(betas=(0.9, -0.1)), "betas must be"),
        (lambda: OptimConfig(warmup_steps=-1), "warmup_steps must be an integer >= 0"),
        (lambda: OptimConfig(decay_start=0.0), r"decay_start must be in \(0, 1\]"),
        (lambda: OptimConfig(grad_clip=float("inf")), "grad_clip must be"),
        (lambda: SparsityConfig(l1_coef=-1.0), "l1_coef must be a finite number >= 0"),
        (lambda: SparsityConfig(bandwidth=0.0), "bandwidth must be"),
        (lambda: DeadConfig(method="zombie"), "dead method must be one of"),
        (lambda: DeadConfig(window_tokens=0), "window_tokens must be an integer >= 1"),
        (lambda: DeadConfig(resample_every=0), "resample_every must be"),
        (lambda: TrainConfig(tokens=100, batch_size=0), "batch_size must be an integer >= 1"),
        (lambda: TrainConfig(tokens=100, batch_size=10, log_every=0), "log_every must be"),
        (lambda: TrainConfig(tokens=100, batch_size=10, checkpoint_every=-1), "checkpoint_every"),
        (lambda: TrainConfig(tokens=100, batch_size=10, init_rows=0), "init_rows must be"),
        (lambda: TrainConfig(tokens=100, batch_size=10, encoder_dtype="fp8"), "encoder_dtype"),
        (lambda: TrainConfig(tokens=10, batch_size=512), "at least one batch"),
    ],
)
def test_bad_values_are_refused_with_what_was_expected(make, match) -> None:
    with pytest.raises(SaescopeError, match=match):
        make()


def test_a_config_round_trips_through_its_dict() -> None:
    cfg = TrainConfig(tokens=1000, batch_size=10, optim=OptimConfig(lr=1e-3, betas=(0.0, 0.99)))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.fixture
def cache(model, corpus, tmp_path):
    out = tmp_path / "cache"
    context = ContextConfig(context_size=16, seed=0)
    capture(model, ["layers.1.resid_post"], out, corpus=corpus, tokens=256, context=context,
            batch_size=4, shard_rows=128, progress=False)  # fmt: skip
    return out


def _train(cache, out, *extra: str) -> list[str]:
    return [
        "train", "--acts", str(cache), "--out", str(out), "--width", "64", "--k", "4",
        "--batch-size", "32", "--holdout", "0", "--encoder-dtype", "float32",
        "--checkpoint-every", "2", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("lr", ["-1", "nan"])
def test_train_with_a_bad_lr_is_one_clear_line(cache, tmp_path, caplog, lr) -> None:
    assert cli.main(_train(cache, tmp_path / "run", "--lr", lr)) == 2
    assert f"lr must be a finite number > 0 (or None), got {float(lr)}" in caplog.text
    assert "Traceback" not in caplog.text


def test_train_resume_with_another_lr_or_seed_is_refused(cache, tmp_path, caplog) -> None:
    run = tmp_path / "run"
    assert cli.main(_train(cache, run, "--lr", "0.001")) == 0  # 8 steps
    saved = (run / "topk-w64-k4" / "config.json").read_text()
    assert cli.main(_train(cache, run, "--lr", "0.002", "--seed", "1", "--resume")) == 2
    assert "train.optim.lr: saved 0.001, given 0.002" in caplog.text
    assert "train.seed: saved 0, given 1" in caplog.text
    assert (run / "topk-w64-k4" / "config.json").read_text() == saved  # left as it was
    caplog.clear()
    argv = _train(cache, run, "--lr", "0.001", "--resume", "--checkpoint-every", "3")
    assert cli.main(argv) == 0, caplog.text  # a free setting: resumed (a finished run: a no-op)
    assert json.loads(saved)["train"]["optim"]["lr"] == 0.001


def test_train_resume_with_another_outlier_policy_is_refused(cache, tmp_path, caplog) -> None:
    """The policy decides which rows the SAE trains on: it is in the SAE's metadata, so the
    resume check sees it and the saved SAE says how it was trained."""
    run = tmp_path / "run"
    assert cli.main(_train(cache, run, "--outliers", "keep")) == 0
    saved = json.loads((run / "topk-w64-k4" / "cfg.json").read_text())
    assert saved["metadata"]["outliers"]["mode"] == "keep"
    assert cli.main(_train(cache, run, "--outliers", "exclude", "--resume")) == 2
    assert "sae.metadata.extra.outliers.mode: saved 'keep', given 'exclude'" in caplog.text
