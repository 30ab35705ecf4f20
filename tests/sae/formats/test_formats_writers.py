"""Writers: saescope SAEs written as Gemma Scope 2 and sparsify files are those formats (their
reference formulas give the original's outputs) and load back with equal outputs."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from format_layouts import gs_ref

from saescope.errors import SaescopeError
from saescope.sae import SAEConfig, SAEMetadata, build_sae, load_sae, save_sae
from saescope.sae.formats import save_gemma_scope_2, save_sparsify

META = SAEMetadata(
    model_name="tiny-llama",
    site="layers.1.resid_post",
    hook_name="blocks.1.hook_resid_post",
    context_size=32,
)


def _sae(arch: str, d: int = 16, m: int = 40, apply_b_dec: bool = True):
    k = 4 if arch in ("topk", "batchtopk") else None
    cfg = SAEConfig(
        d_in=d, d_sae=m, architecture=arch, k=k, apply_b_dec_to_input=apply_b_dec, metadata=META
    )
    sae = build_sae(cfg, seed=1)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2)
        sae.b_dec.normal_(0, 0.5)
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(torch.rand(m) * 0.3)
    return sae.eval()


def _outputs(sae, x):
    with torch.no_grad():
        return sae.encode_dense(x), sae(x).x_hat


@pytest.mark.parametrize("arch", ["jumprelu", "batchtopk"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_gemma_scope_2_round_trip(arch: str, apply_b_dec: bool, tmp_path) -> None:
    sae = _sae(arch, apply_b_dec=apply_b_dec)
    path = save_gemma_scope_2(sae, tmp_path / "gs2")
    config = json.loads((path / "config.json").read_text())
    assert (
        config["architecture"] == "jump_relu"
        and config["hf_hook_point_in"] == "model.layers.1.output"
    )
    assert config["width"] == 40
    x = torch.randn(200, 16)
    want_acts, want_x_hat = _outputs(sae, x)
    assert (want_acts > 0).any()
    # the file is a Gemma Scope 2 file: the published formula on its tensors gives the outputs
    tensors = safetensors.torch.load_file(path / "params.safetensors")
    assert sorted(tensors) == ["b_dec", "b_enc", "threshold", "w_dec", "w_enc"]
    acts, x_hat = gs_ref(tensors, x)
    torch.testing.assert_close(acts, want_acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat, want_x_hat, rtol=1e-5, atol=1e-5)
    back = load_sae(path)
    assert (
        back.cfg.metadata.site == "layers.1.resid_post"
        and back.cfg.metadata.model_name == "tiny-llama"
    )
    assert back.cfg.metadata.context_size == 32
    acts, x_hat = _outputs(back, x)
    torch.testing.assert_close(acts, want_acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat, want_x_hat, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_sparsify_round_trip(apply_b_dec: bool, tmp_path) -> None:
    sae = _sae("topk", apply_b_dec=apply_b_dec)
    path = save_sparsify(sae, tmp_path / "run" / "layers.1")
    cfg = json.loads((path / "cfg.json").read_text())
    assert (
        cfg["k"] == 4
        and cfg["num_latents"] == 40
        and cfg["d_in"] == 16
        and cfg["activation"] == "topk"
    )
    t = safetensors.torch.load_file(path / "sae.safetensors")
    assert t["encoder.weight"].shape == (40, 16) and t["W_dec"].shape == (40, 16)
    x = torch.randn(200, 16)
    want_acts, want_x_hat = _outputs(sae, x)
    # sparsify's SparseCoder.encode / decode, written out
    pre = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    top = pre.topk(4, dim=-1)
    acts = torch.zeros_like(pre).scatter_(-1, top.indices, top.values)
    torch.testing.assert_close(acts, want_acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acts @ t["W_dec"] + t["b_dec"], want_x_hat, rtol=1e-5, atol=1e-5)
    back = load_sae(path)
    assert back.cfg.metadata.site == "layers.1.resid_post"
    acts, x_hat = _outputs(back, x)
    torch.testing.assert_close(acts, want_acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat, want_x_hat, rtol=1e-5, atol=1e-5)


def test_writers_refuse_what_their_format_cannot_hold(tmp_path) -> None:
    with pytest.raises(
        SaescopeError, match="Gemma Scope 2 files hold JumpReLU SAEs; this SAE is topk"
    ):
        save_gemma_scope_2(_sae("topk"), tmp_path / "a")
    with pytest.raises(SaescopeError, match="sparsify files hold TopK SAEs; this SAE is jumprelu"):
        save_sparsify(_sae("jumprelu"), tmp_path / "b")


def test_saelens_activation_scaler_is_folded(tmp_path) -> None:
    sae = _sae("relu", apply_b_dec=True)
    path = save_sae(sae, tmp_path / "s")
    cfg = json.loads((path / "cfg.json").read_text())
    del cfg["saescope_architecture"]
    cfg["metadata"].pop("saescope_version")
    cfg["normalize_activations"] = "expected_average_only_in"
    (path / "cfg.json").write_text(json.dumps(cfg))
    (path / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 0.25}))
    back = load_sae(path)
    x = torch.randn(50, 16) * 4
    # the original SAE saw x * 0.25 and reconstructed in that scale
    with torch.no_grad():
        torch.testing.assert_close(
            back.encode_dense(x), sae.encode_dense(x * 0.25), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(back(x).x_hat, sae(x * 0.25).x_hat / 0.25, rtol=1e-5, atol=1e-5)
    assert back.cfg.metadata.extra["provenance"]["format"] == "saelens"
    (path / "activation_scaler.json").unlink()
    with pytest.raises(SaescopeError, match="cannot be folded"):
        load_sae(path)
