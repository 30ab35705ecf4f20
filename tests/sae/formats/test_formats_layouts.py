"""Each published layout, built here in tiny dims, loads and encodes / decodes as its paper's,
tutorial's or library's formula says (format_layouts.py writes each formula out)."""

from __future__ import annotations

import json

import pytest
import torch
from format_layouts import GEMMA_SCOPE_2, LAYOUTS, Layout

from saescope.errors import SaescopeError
from saescope.sae import load_sae, sae_site
from saescope.sae.formats import FORMATS, detect_format
from saescope.sae.formats import load_sae as formats_load_sae

X_ROWS = 64


def _load_and_compare(layout: Layout, tmp_path, d: int, m: int):
    tensors = layout.tensors(d, m)
    path = layout.write(tmp_path / "sae", tensors)
    sae = load_sae(path)
    x = torch.randn(X_ROWS, d) * 2
    want_acts, want_x_hat = layout.ref(tensors, x)
    with torch.no_grad():
        acts = sae.encode_dense(x)
        x_hat = sae(x).x_hat
    torch.testing.assert_close(acts, want_acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat, want_x_hat, rtol=1e-5, atol=1e-5)
    assert (acts > 0).any() and (acts == 0).any()  # a real sparse code, not all or nothing
    return sae, path, tensors, x, acts


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_matches_its_reference_formula(name: str, tmp_path) -> None:
    layout = LAYOUTS[name]
    sae, path, _, _, _ = _load_and_compare(layout, tmp_path, d=6, m=10)
    assert detect_format(path) == layout.name
    prov = sae.cfg.metadata.extra["provenance"]
    assert prov["format"] == layout.name and layout.weights.split("/")[-1] in prov["files"][0]
    # the explicit format gives the same SAE as detection
    again = formats_load_sae(path, format=layout.name)
    torch.testing.assert_close(again.W_enc, sae.W_enc)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_square_layout_is_not_read_transposed(name: str, tmp_path) -> None:
    """d_in == d_sae: a transposed matrix has the right shape, so only the formula catches it."""
    layout = LAYOUTS[name]
    sae, _, tensors, x, _ = _load_and_compare(layout, tmp_path, d=8, m=8)  # matches the formula
    flipped = {**tensors, layout.matrix: tensors[layout.matrix].T.contiguous()}
    _, wrong_x_hat = layout.ref(flipped, x)
    with torch.no_grad():
        x_hat = sae(x).x_hat
    assert not torch.allclose(x_hat, wrong_x_hat, atol=1e-3)  # and not the transposed reading


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_transposed_matrix_is_refused_naming_the_file(name: str, tmp_path) -> None:
    layout = LAYOUTS[name]
    tensors = layout.tensors(6, 10)
    tensors[layout.matrix] = tensors[layout.matrix].T.contiguous()
    path = layout.write(tmp_path / "sae", tensors)
    with pytest.raises(SaescopeError, match=r"looks transposed") as err:
        load_sae(path)
    assert layout.weights.split("/")[-1] in str(err.value)


def test_sites_models_and_folded_scale_are_recorded(tmp_path) -> None:
    gs2 = LAYOUTS["gemma_scope_2"]
    sae = load_sae(gs2.write(tmp_path / "gs2", gs2.tensors(6, 10)))
    meta = sae.cfg.metadata
    assert meta.site == "layers.6.resid_post" and meta.hook_name == "blocks.6.hook_resid_post"
    assert meta.model_name == "gemma-3-270m" and not sae.cfg.apply_b_dec_to_input
    assert meta.extra["hf_hook_name"] == "model.layers.6.output"
    assert meta.extra["provenance"]["config"]["architecture"] == "jump_relu"
    gs1 = LAYOUTS["gemma_scope"]
    meta = load_sae(gs1.write(tmp_path / "gs1", gs1.tensors(6, 10))).cfg.metadata
    assert meta.site == "layers.3.resid_post" and meta.model_name == "gemma-2-2b"
    sp = LAYOUTS["sparsify"]
    meta = load_sae(sp.write(tmp_path / "sp", sp.tensors(6, 10))).cfg.metadata
    assert meta.site == "layers.2.resid_post" and meta.model_name == "EleutherAI/pythia-70m"
    ls = LAYOUTS["llama_scope"]
    meta = load_sae(ls.write(tmp_path / "ls", ls.tensors(6, 10))).cfg.metadata
    assert meta.site == "layers.1.resid_post" and meta.extra["input_scale_folded"] > 0
    gf = LAYOUTS["goodfire"]
    meta = load_sae(gf.write(tmp_path / "gf", gf.tensors(6, 10))).cfg.metadata
    assert (
        meta.site == "layers.1.resid_post" and meta.model_name == "meta-llama/Llama-3.1-8B-Instruct"
    )
    pre6 = LAYOUTS["saelens-pre6-topk"]
    sae = load_sae(pre6.write(tmp_path / "pre6", pre6.tensors(6, 10)))
    assert sae.cfg.architecture == "topk" and sae.cfg.k == 3
    assert (
        sae.cfg.metadata.site is None and sae.cfg.metadata.hook_name == "blocks.2.hook_resid_post"
    )
    assert sae_site(sae) == "layers.2.resid_post"
    dl = LAYOUTS["dictionary_learning-AutoEncoderTopK"]
    sae = load_sae(dl.write(tmp_path / "dl", dl.tensors(6, 10)))
    assert sae.cfg.architecture == "topk" and sae.cfg.k == 3
    assert sae.cfg.metadata.site == "layers.2.resid_post"


def test_an_sae_at_no_saescope_site_says_so(tmp_path) -> None:
    """Gemma Scope 2 attn_out SAEs read the per-head z before o_proj: loadable, no site."""
    gs2 = GEMMA_SCOPE_2
    path = gs2.write(tmp_path / "att", gs2.tensors(6, 10))
    config = json.loads((path / "config.json").read_text())
    config["hf_hook_point_in"] = "model.layers.6.self_attn.o_proj.input"
    (path / "config.json").write_text(json.dumps(config))
    sae = load_sae(f"gemma_scope_2:{path}")
    assert sae.cfg.metadata.site is None
    with pytest.raises(SaescopeError, match=r"att \(gemma_scope_2\): metadata names no site"):
        sae_site(sae, path)


def test_registry_and_unknown_input(tmp_path) -> None:
    assert list(FORMATS) == [
        "saelens",
        "sparsify",
        "gemma_scope_2",
        "gemma_scope",
        "dictionary_learning",
        "llama_scope",
        "goodfire",
    ]
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "weights.bin").write_bytes(b"\0" * 8)
    with pytest.raises(SaescopeError, match=r"odd is not an SAE directory .*found weights\.bin"):
        load_sae(tmp_path / "odd")
    with pytest.raises(SaescopeError, match="unknown SAE format 'onnx'"):
        formats_load_sae(tmp_path / "odd", format="onnx")
    with pytest.raises(SaescopeError, match="does not exist"):
        load_sae(tmp_path / "nowhere")
