"""Matryoshka BatchTopK: nested prefixes each reconstruct; the training step's sparse paths
match a naive dense computation, gradients included."""

import json

import pytest
import torch

from saescope.errors import SaescopeError
from saescope.sae import SAEConfig, build_sae, load_sae
from saescope.sae.config import default_prefix_widths
from saescope.train import DeadConfig, OptimConfig, SAETrainer, StepContext, TrainConfig, fit
from saescope.train.objectives import fvu, matryoshka_objective, nested_decode


def _frequent_then_rare(index: int, B: int = 256) -> torch.Tensor:
    """(B, 32): 16 frequent directions (p = 0.25 each) then 48 rare ones (p = 0.02)."""
    g = torch.Generator().manual_seed(index)
    D = torch.nn.functional.normalize(
        torch.randn(64, 32, generator=torch.Generator().manual_seed(7)), dim=1
    )
    p = torch.cat([torch.full((16,), 0.25), torch.full((48,), 0.02)])
    on = torch.rand(B, 64, generator=g) < p
    mag = torch.empty(B, 64).exponential_(1.0, generator=g) + 0.5
    return (on * mag) @ D + 0.01 * torch.randn(B, 32, generator=g)


def _sae(widths=(8, 32, 64), d: int = 16, k: int = 4):
    cfg = SAEConfig(d_in=d, d_sae=64, architecture="matryoshka", k=k, matryoshka_widths=widths)
    sae = build_sae(cfg, seed=0)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    return sae


def test_the_config_checks_and_defaults_the_prefix_widths() -> None:
    assert default_prefix_widths(8192) == (128, 512, 2048, 8192)
    assert default_prefix_widths(32) == (2, 8, 32)
    assert SAEConfig(d_in=4, d_sae=256, architecture="matryoshka", k=2).prefix_widths == (
        4,
        16,
        64,
        256,
    )
    assert SAEConfig(d_in=4, d_sae=256, architecture="batchtopk", k=2).prefix_widths == (256,)
    for bad in ((8, 8, 64), (16, 8, 64), (8, 32), (0, 64), (8.0, 64), [8, 64]):
        with pytest.raises(SaescopeError, match="strictly increasing integers > 0 ending at d_sae"):
            SAEConfig(d_in=4, d_sae=64, architecture="matryoshka", k=2, matryoshka_widths=bad)
    with pytest.raises(SaescopeError, match="only for architectures with nested prefixes"):
        SAEConfig(d_in=4, d_sae=64, architecture="topk", k=2, matryoshka_widths=(8, 64))


def test_each_prefix_reconstructs_from_its_own_latents_only() -> None:
    sae = _sae().train()
    x = torch.randn(32, 16)
    latents = sae.encode(x)
    dense = latents.to_dense()  # (B, 64)
    outs = nested_decode(sae, latents, (8, 32, 64))
    for width, out in zip((8, 32, 64), outs, strict=True):
        torch.testing.assert_close(out, dense[:, :width] @ sae.W_dec[:width] + sae.b_dec)
    torch.testing.assert_close(outs[-1], sae.decode(latents))


def test_the_training_step_matches_a_naive_dense_loss_and_gradients() -> None:
    sae = _sae().train()
    cfg = TrainConfig(tokens=64, batch_size=64, dead=DeadConfig(method="none"))
    ctx = StepContext(
        cfg=cfg,
        dead=torch.zeros(64, dtype=torch.bool),
        progress=0.0,
        dead_method="none",
        variance=2.0,
    )
    x = torch.randn(64, 16)
    out = matryoshka_objective(sae, x, ctx)
    out.loss.backward()
    fast = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sae.zero_grad()

    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc  # (B, n), with autograd
    keep = torch.zeros_like(pre, dtype=torch.bool).view(-1)
    keep[pre.detach().view(-1).topk(64 * 4).indices] = True
    z = pre.relu() * keep.view_as(pre)
    errors = [
        (x - (z[:, :w] @ sae.W_dec[:w] + sae.b_dec)).pow(2).sum(-1).mean() for w in (8, 32, 64)
    ]
    naive = torch.stack(errors).mean() / 2.0
    naive.backward()
    torch.testing.assert_close(out.loss, naive)
    for name, p in sae.named_parameters():
        torch.testing.assert_close(fast[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)
    total = float((x - x.mean(0)).pow(2).sum())
    logged = [out.metrics["fvu_w8"], out.metrics["fvu_w32"], out.metrics["fvu"]]
    assert logged == pytest.approx([float(e.detach()) * 64 / total for e in errors], rel=1e-5)
    assert float(sae.threshold[0]) > 0  # the inference threshold moved towards the selection


def _train(arch: str, tmp_path) -> SAETrainer:
    widths = {"matryoshka": (16, 128)}.get(arch)
    cfg = SAEConfig(d_in=32, d_sae=128, architecture=arch, k=6, matryoshka_widths=widths)
    t = SAETrainer(
        build_sae(cfg, seed=0),
        TrainConfig(
            tokens=120 * 256,
            batch_size=256,
            optim=OptimConfig(lr=2e-3),
            checkpoint_every=0,
            init_rows=2048,
            log_every=10,
        ),
        name=arch,
    )
    fit([t], (_frequent_then_rare(i) for i in range(120)), tmp_path, progress=False)
    return t


def test_a_trained_prefix_reconstructs_far_better_than_batchtopks_and_saves(tmp_path) -> None:
    x = _frequent_then_rare(10**6, 2048)
    prefix_fvu = {}
    for arch in ("matryoshka", "batchtopk"):
        sae = _train(arch, tmp_path).sae.eval()
        latents = sae.encode(x)
        [first, whole] = nested_decode(sae, latents, (16, 128))
        prefix_fvu[arch] = float(fvu(x, first.detach()))
        assert float(fvu(x, whole.detach())) < 0.7
    # 16 latents of 128: Matryoshka trains them to carry the 16 frequent directions on their
    # own; BatchTopK's first 16 are as good as any other 16.
    assert prefix_fvu["matryoshka"] < 0.9 * prefix_fvu["batchtopk"], prefix_fvu  # 0.78 vs 0.95
    loaded = load_sae(tmp_path / "matryoshka")
    assert loaded.cfg.matryoshka_widths == (16, 128)
    cfg = json.loads((tmp_path / "matryoshka" / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["matryoshka_widths"] == [16, 128]
    trained = load_sae(tmp_path / "matryoshka")
    torch.testing.assert_close(trained(x).x_hat, loaded(x).x_hat, rtol=0, atol=0)
    lines = (tmp_path / "matryoshka" / "metrics.jsonl").read_text().splitlines()
    assert "fvu_w16" in json.loads(lines[-1])
