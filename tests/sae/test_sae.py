import json

import pytest
import torch

from saescope.errors import SaescopeError
from saescope.sae import ARCHITECTURES, SAEConfig, SAEMetadata, build_sae, load_sae, save_sae
from saescope.sae.io import load_log10_density


def make(arch: str, d: int = 16, n: int = 64, **kwargs) -> torch.nn.Module:
    k = 4 if ARCHITECTURES[arch].needs_k else None
    sae = build_sae(SAEConfig(d_in=d, d_sae=n, architecture=arch, k=k, **kwargs))
    with torch.no_grad():  # non-trivial biases and thresholds
        for name, p in sae.named_parameters():
            if p.dim() == 1:
                p.normal_(0, 0.1) if name != "threshold" else p.uniform_(0, 0.2)
    return sae


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_forward_equals_decode_of_encode(arch: str) -> None:
    sae = make(arch).eval()
    x = torch.randn(3, 5, 16)
    out = sae(x)
    assert out.x_hat.shape == x.shape
    torch.testing.assert_close(out.x_hat.reshape(-1, 16), sae.decode(sae.encode(x)))
    dense = sae.encode_dense(x)
    assert dense.shape == (3, 5, 64)
    manual = dense.reshape(-1, 64) @ sae.W_dec + sae.b_dec
    torch.testing.assert_close(out.x_hat.reshape(-1, 16), manual, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_save_load_round_trip(arch: str, tmp_path) -> None:
    sae = make(
        arch,
        metadata=SAEMetadata(
            model_name="m",
            hook_name="blocks.1.hook_resid_post",
            site="layers.1.resid_post",
            extra={"note": "x"},
        ),
    ).eval()
    density = torch.linspace(-5, 0, 64)
    save_sae(sae, tmp_path / "s", log10_density=density)
    loaded = load_sae(tmp_path / "s")
    assert loaded.cfg == sae.cfg
    for key, value in sae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    x = torch.randn(8, 16)
    torch.testing.assert_close(loaded(x).x_hat, sae(x).x_hat, rtol=0, atol=0)
    torch.testing.assert_close(load_log10_density(tmp_path / "s"), density)
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    assert cfg["metadata"]["sae_lens_version"].startswith("6")


def test_topk_keeps_exactly_k() -> None:
    sae = make("topk", n=64)
    latents = sae.encode(torch.randn(32, 16) * 10)
    assert latents.values.shape == (32 * 4,)
    assert torch.equal(torch.bincount(latents.rows, minlength=32), torch.full((32,), 4))
    assert (latents.l0() <= 4).all()


def test_batchtopk_keeps_k_on_average_and_thresholds_at_inference() -> None:
    sae = make("batchtopk").train()
    latents = sae.encode(torch.randn(32, 16))
    assert len(latents.values) == 32 * 4
    sae.eval()
    sae.threshold.fill_(0.05)
    x = torch.randn(8, 16)
    pre = sae.pre_acts(sae.center(x))
    torch.testing.assert_close(sae.encode_dense(x), pre * (pre > 0.05))


def test_folding_the_input_scale_keeps_latents_and_reconstructions() -> None:
    for arch in sorted(ARCHITECTURES):
        sae = make(arch).eval()
        x = torch.randn(8, 16) * 50
        scaled = sae(x * 0.02)
        sae.fold_input_scale_(0.02)
        raw = sae(x)
        torch.testing.assert_close(
            raw.latents.to_dense(), scaled.latents.to_dense(), rtol=1e-4, atol=1e-4
        )
        torch.testing.assert_close(raw.x_hat, scaled.x_hat / 0.02, rtol=1e-4, atol=1e-3)


def test_bad_configs_and_inputs_are_clear_errors(tmp_path) -> None:
    with pytest.raises(SaescopeError, match=r"unknown SAE architecture 'relux'.*topk"):
        SAEConfig(d_in=4, d_sae=8, architecture="relux")
    with pytest.raises(SaescopeError, match="needs 0 < k"):
        SAEConfig(d_in=4, d_sae=8, architecture="topk")
    sae = make("topk")
    with pytest.raises(SaescopeError, match="d_in=16, activations have 17"):
        sae(torch.randn(2, 17))
    with pytest.raises(SaescopeError, match="not an SAE directory"):
        load_sae(tmp_path)
    save_sae(sae, tmp_path / "s")
    data = (tmp_path / "s" / "sae_weights.safetensors").read_bytes()
    (tmp_path / "s" / "sae_weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SaescopeError, match="corrupt or truncated"):
        load_sae(tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    save_sae(sae, tmp_path / "s")
    (tmp_path / "s" / "cfg.json").write_text(json.dumps({**cfg, "d_sae": 32}))
    with pytest.raises(SaescopeError, match="does not match"):
        load_sae(tmp_path / "s")


def test_build_sae_seeds_locally_and_unseeded_builds_differ() -> None:
    cfg = SAEConfig(d_in=8, d_sae=16, architecture="relu")
    state = torch.random.get_rng_state()
    a, b = build_sae(cfg, seed=1), build_sae(cfg, seed=1)
    assert torch.equal(a.W_dec, b.W_dec)
    assert torch.equal(torch.random.get_rng_state(), state)  # a seeded build leaves it alone
    assert not torch.equal(build_sae(cfg).W_dec, build_sae(cfg).W_dec)
