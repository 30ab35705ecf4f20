import json

import pytest
import torch
from synthetic import Superposition, mean_max_cosine

from saescope.errors import SaescopeError
from saescope.sae import ARCHITECTURES, SAEConfig, build_sae, load_sae
from saescope.train import DeadConfig, OptimConfig, SAETrainer, TrainConfig, fit, geometric_median
from saescope.train.objectives import fvu

DATA = Superposition(d=32, m=128, l0=4)


def trainer(arch: str, steps: int = 200, B: int = 512, n: int = 256, **cfg) -> SAETrainer:
    k = 6 if ARCHITECTURES[arch].needs_k else None
    sae = build_sae(SAEConfig(d_in=32, d_sae=n, architecture=arch, k=k), seed=0)
    cfg = {"optim": OptimConfig(lr=1e-3), "checkpoint_every": 0, "init_rows": 2048, **cfg}
    return SAETrainer(sae, TrainConfig(tokens=steps * B, batch_size=B, **cfg), name=arch)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_recovers_the_true_dictionary(arch: str) -> None:
    t = trainer(arch, steps=300)
    [sae] = fit([t], DATA.batches(300, 512), progress=False)
    assert mean_max_cosine(sae.W_dec.detach(), DATA.D) >= 0.9
    x = DATA.batch(10**6, 2048)
    out = sae(x)
    assert float(fvu(x, out.x_hat.detach())) < (0.8 if arch == "relu" else 0.5)  # L1 shrinks relu
    if arch == "topk":
        assert (out.latents.l0() <= 6).all()
    if t.unit_norm:
        torch.testing.assert_close(t.sae.W_dec.norm(dim=1), torch.ones(256))


def test_auxk_revives_latents_that_never_fire() -> None:
    def killed(method: str) -> SAETrainer:
        t = trainer("topk", steps=300, dead=DeadConfig(method=method, window_tokens=2048))
        with torch.no_grad():  # 64 latents too weak ever to make the top k
            t.sae.W_enc[:, :64] *= 0.1
        return t

    results = {}
    for method in ("none", "auxk"):
        t = killed(method)
        fit([t], DATA.batches(300, 512), progress=False)
        results[method] = float(t.tracker.dead[:64].float().mean())
    assert results["none"] == 1.0 and results["auxk"] < 0.5


def test_resampling_revives_dead_relu_latents() -> None:
    t = trainer(
        "relu", steps=40, dead=DeadConfig(method="resample", window_tokens=2048, resample_every=20)
    )
    with torch.no_grad():
        t.sae.W_enc[:, :64] = -t.sae.W_enc[:, :64].abs()  # never positive on these inputs?
        t.sae.b_enc[:64] = -1e3
    fit([t], DATA.batches(40, 512), progress=False)
    assert float(t.sae.b_enc[:64].min().detach()) > -1e3  # re-initialised
    assert float(t.tracker.dead[:64].float().mean()) < 1.0


def test_ghost_grads_reach_dead_latents_only_through_their_term() -> None:
    from saescope.train.objectives import StepContext, relu_objective

    t = trainer("relu", steps=10)
    with torch.no_grad():
        t.sae.b_enc[:32] = -5.0  # never fire: the main loss gives them no gradient
    dead = torch.zeros(256, dtype=torch.bool)
    dead[:32] = True
    x = DATA.batch(0, 512) * 0.1  # pre-activations of the dead latents stay near -5
    grads = {}
    for method in ("none", "ghost"):
        t.sae.zero_grad()
        relu_objective(t.sae, x, StepContext(t.cfg, dead, 0.5, method)).loss.backward()
        grads[method] = t.sae.W_enc.grad[:, :32].abs().sum()
    assert grads["none"] == 0 and grads["ghost"] > 0


def test_geometric_median_resists_outliers() -> None:
    x = torch.randn(1000, 4)
    x[:10] += 1e4
    assert geometric_median(x).norm() < 1.0 < x.mean(0).norm()


def test_resume_after_a_kill_gives_the_same_weights(tmp_path) -> None:
    def run(directory, stop_after=None, resume=False):
        t = trainer("topk", steps=40, checkpoint_every=10, log_every=5)
        batches = DATA.batches(40, 512)
        if stop_after is not None:
            batches = (b for i, b in enumerate(batches) if i < stop_after or _die())
        fit([t], batches, directory, resume=resume, progress=False)
        return t

    whole = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", stop_after=25)
    with pytest.raises(SaescopeError, match="--resume"):
        run(tmp_path / "killed")
    resumed = run(tmp_path / "killed", resume=True)
    for key, value in whole.sae.state_dict().items():
        torch.testing.assert_close(resumed.sae.state_dict()[key], value, rtol=0, atol=0)
    a, b = load_sae(tmp_path / "whole" / "topk"), load_sae(tmp_path / "killed" / "topk")
    torch.testing.assert_close(a.W_enc, b.W_enc, rtol=0, atol=0)
    lines = (tmp_path / "whole" / "topk" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8 and {"fvu", "l0", "dead", "tokens_per_s"} <= set(json.loads(lines[-1]))


def _die():
    raise KeyboardInterrupt


def test_a_sweep_trains_several_saes_from_one_pass(tmp_path) -> None:
    ts = [trainer("topk", steps=20), trainer("batchtopk", steps=20)]
    seen = []

    def counted():
        for b in DATA.batches(20, 512):
            seen.append(1)
            yield b

    saes = fit(ts, counted(), tmp_path, progress=False)
    assert len(seen) == 20 and len(saes) == 2
    assert (tmp_path / "topk" / "cfg.json").exists() and (
        tmp_path / "batchtopk" / "sparsity.safetensors"
    ).exists()


def test_saved_sae_works_on_raw_inputs() -> None:
    t = trainer("topk", steps=100)
    big = (b * 1000 + 500 for b in DATA.batches(100, 512))
    [sae] = fit([t], big, progress=False)
    assert t.scale < 0.01
    x = DATA.batch(10**6, 1024) * 1000 + 500
    assert float(fvu(x, sae(x).x_hat.detach())) < 0.5


def test_bad_input_is_refused_before_training() -> None:
    with pytest.raises(SaescopeError, match="d_in=32, the activations have d=16"):
        fit([trainer("topk", steps=2)], [torch.randn(512, 16)] * 2, progress=False)
    nan = torch.randn(512, 32)
    nan[3, 3] = float("nan")
    with pytest.raises(SaescopeError, match="NaN"):
        fit([trainer("topk", steps=2)], [nan] * 2, progress=False)
    late_nan = [torch.randn(512, 32)] * 8 + [nan]  # past the initialisation sample
    with pytest.raises(SaescopeError, match=r"loss is nan at step \d+"):
        fit([trainer("topk", steps=9)], late_nan, progress=False)
    with pytest.raises(SaescopeError, match="empty"):
        fit([trainer("topk", steps=2)], [], progress=False)
    with pytest.raises(SaescopeError, match="at least one batch"):
        TrainConfig(tokens=10, batch_size=512)


def test_missing_tracker_is_named_with_its_install(tmp_path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed")
    with pytest.raises(SaescopeError, match="pip install tensorboard"):
        fit(
            [trainer("topk", steps=2)],
            DATA.batches(2, 512),
            tmp_path,
            log_to=["tensorboard"],
            progress=False,
        )


def test_jumprelu_thresholds_learn_and_l0_goes_down(tmp_path) -> None:
    t = trainer("jumprelu", steps=150, log_every=10)
    fit([t], DATA.batches(150, 512), tmp_path, progress=False)
    l0 = [json.loads(line)["l0"] for line in (tmp_path / "jumprelu" / "metrics.jsonl").open()]
    assert l0[-1] < 0.6 * l0[0], l0
    assert float(t.sae.threshold.detach().mean()) > 0.01  # moved from the 1e-3 start


def test_decoder_norm_at_most_one_and_no_pre_encoder_bias() -> None:
    sae = build_sae(
        SAEConfig(d_in=32, d_sae=256, architecture="topk", k=6, apply_b_dec_to_input=False), seed=0
    )
    t = SAETrainer(
        sae,
        TrainConfig(
            tokens=40 * 512,
            batch_size=512,
            init_rows=2048,
            decoder_norm="at_most_one",
            checkpoint_every=0,
        ),
    )
    fit([t], DATA.batches(40, 512), progress=False)
    norms = t.sae.W_dec.detach().norm(dim=1)
    assert float(norms.max()) <= 1 + 1e-5 and float(norms.min()) < 0.999
    x = DATA.batch(7, 8)
    torch.testing.assert_close(t.sae.pre_acts(t.sae.center(x)), x @ t.sae.W_enc + t.sae.b_enc)
