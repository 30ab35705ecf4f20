"""Transcoders in each published layout load as the format's reference formula says, with their
input and output sites; the orientation traps (a square skip, where only the formula catches a
transpose) and the layouts still refused say so clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transcoder_layouts as tl
from transcoders import SITE_IN, exact_transcoder, linear_mlp_model

from saescope.errors import SaescopeError
from saescope.evaluate import spliced_stats
from saescope.sae import load_sae, sae_site, sae_site_out
from saescope.sae.formats import source_dir, weights_file

ROWS = 64


def _outputs(sae, x):
    with torch.no_grad():
        return sae.encode_dense(x), sae(x).x_hat


def _matches(sae, ref, t, x) -> None:
    acts, out = _outputs(sae, x)
    want_acts, want_out = ref(t, x)
    torch.testing.assert_close(acts, want_acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-5)
    assert (acts > 0).any() and (acts == 0).any()


# -- Gemma Scope 2 transcoders -----------------------------------------------------------------


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize(("d", "m", "o"), [(6, 10, 4), (8, 8, 8)])
def test_gemma_scope_2_transcoder_matches_the_tutorial(tmp_path, skip, d, m, o) -> None:
    t = tl.jumprelu_tensors(d, m, o, skip)
    sae = load_sae(tl.write_gs2_transcoder(tmp_path, t))
    _matches(sae, tl.gs_tc_ref, t, torch.randn(ROWS, d) * 2)
    assert sae.cfg.is_transcoder and sae.cfg.skip == skip and sae.cfg.d_out == o
    assert (sae_site(sae), sae_site_out(sae)) == ("layers.5.mlp_in", "layers.5.mlp_out")
    meta = sae.cfg.metadata
    assert meta.hook_name == "blocks.5.ln2.hook_normalized"
    assert meta.hook_name_out == "blocks.5.hook_mlp_out" and meta.model_name == "gemma-3-270m"
    assert meta.extra["hf_hook_name_out"].endswith("post_feedforward_layernorm.output")


def test_gemma_scope_2_skip_orientation(tmp_path) -> None:
    """The skip is stored (d_in, d_out): transposed, a non-square one is refused by shape and a
    square one (every published transcoder) loads but the formula tells it apart."""
    t = tl.jumprelu_tensors(6, 10, 4, skip=True)
    flipped = {**t, "affine_skip_connection": t["affine_skip_connection"].T.contiguous()}
    with pytest.raises(SaescopeError, match=r"affine_skip_connection .*looks transposed") as err:
        load_sae(tl.write_gs2_transcoder(tmp_path / "a", flipped))
    assert "params.safetensors" in str(err.value)
    t = tl.jumprelu_tensors(8, 8, 8, skip=True)
    x = torch.randn(ROWS, 8) * 2
    sae = load_sae(tl.write_gs2_transcoder(tmp_path / "b", t))
    flipped = {**t, "affine_skip_connection": t["affine_skip_connection"].T}
    _, out = _outputs(sae, x)
    assert torch.allclose(out, tl.gs_tc_ref(t, x)[1], atol=1e-5)
    assert not torch.allclose(out, tl.gs_tc_ref(flipped, x)[1], atol=1e-3)


def test_gemma_scope_2_transcoder_inconsistent_files(tmp_path) -> None:
    t = tl.jumprelu_tensors(6, 10, 6, skip=False)
    folder = tl.write_gs2_transcoder(tmp_path / "a", t)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "affine_connection": True}))
    with pytest.raises(SaescopeError, match=r"affine_connection=true, but .*no affine_skip"):
        load_sae(folder)
    # hooks swapped: the output site would come before the input site
    folder = tl.write_gs2_transcoder(tmp_path / "b", t)
    config = json.loads((folder / "config.json").read_text())
    swapped = {
        **config,
        "hf_hook_point_in": config["hf_hook_point_out"],
        "hf_hook_point_out": config["hf_hook_point_in"],
    }
    (folder / "config.json").write_text(json.dumps(swapped))
    with pytest.raises(
        SaescopeError,
        match=r"config.json: .*output site layers.5.mlp_in comes before its input site "
        r"layers.5.mlp_out",
    ):
        load_sae(folder)


# -- Gemma Scope 2 cross-layer transcoders: per-layer views ------------------------------------


def test_clt_layer_file_is_read_as_its_own_layer_view(tmp_path) -> None:
    L, n, d, m = 2, 4, 6, 10
    t = tl.clt_tensors(d, m, L, n)
    file = tl.write_clt(tmp_path / "gemma-scope-2-270m-pt", t, L)
    x = torch.randn(ROWS, d) * 2
    sae = load_sae(file)
    diagonal = {**t, "w_dec": t["w_dec"][:, L]}  # b_dec and the skip are this layer's own
    _matches(sae, tl.gs_tc_ref, diagonal, x)
    assert (sae_site(sae), sae_site_out(sae)) == ("layers.2.mlp_in", "layers.2.mlp_out")
    assert sae.cfg.skip and sae.cfg.metadata.model_name == "gemma-3-270m"
    assert sae.cfg.metadata.extra["clt_view"] == {"in_layer": 2, "out_layer": 2}
    # a later output layer: its slot of w_dec, without this layer's bias and skip
    later = load_sae(f"{file}?out_layer=3")
    acts, out = _outputs(later, x)
    want_acts, _ = tl.gs_tc_ref(diagonal, x)
    torch.testing.assert_close(acts, want_acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, want_acts @ t["w_dec"][:, 3], rtol=1e-5, atol=1e-5)
    assert sae_site_out(later) == "layers.3.mlp_out" and not later.cfg.skip
    # each view names the spec it is read back from, and the file its weights are in
    assert source_dir(later, "") == Path(f"{file.resolve()}?out_layer=3")
    assert source_dir(sae, "") == file.resolve() and weights_file(later, "") == file.resolve()
    again = load_sae(str(source_dir(later, "")))
    torch.testing.assert_close(again.W_dec, later.W_dec)


def test_clt_views_that_do_not_exist_are_refused(tmp_path) -> None:
    t = tl.clt_tensors(6, 10, 2, 4)
    file = tl.write_clt(tmp_path, t, 2)
    with pytest.raises(SaescopeError, match=r"out_layer=1 is not an output layer of input layer 2"):
        load_sae(f"{file}?out_layer=1")
    with pytest.raises(SaescopeError, match=r"out_layer=4 is not an output layer"):
        load_sae(f"{file}?out_layer=4")
    with pytest.raises(SaescopeError, match=r"option 'out_layer=x' is not NAME=INTEGER"):
        load_sae(f"{file}?out_layer=x")
    relative = {**t, "w_dec": tl.rand(10, 4, 6)}  # indexed from the input layer: slots 0..1 used
    file = tl.write_clt(tmp_path / "rel", relative, 2)
    with pytest.raises(SaescopeError, match=r"slots 0..1, before input layer 2, are not zero"):
        load_sae(file)
    plain = tl.write_gs2_transcoder(tmp_path / "plain", tl.jumprelu_tensors(6, 10, 6, True))
    with pytest.raises(SaescopeError, match=r"w_dec is 2-D"):
        load_sae(f"{plain}?out_layer=5")
    sp = tl.write_sparsify(tmp_path / "sp", tl.sparsify_tensors(6, 10, False), "layers.1.mlp")
    with pytest.raises(SaescopeError, match=r"format sparsify takes no option out_layer"):
        load_sae(f"{sp}?out_layer=1")


# -- Gemma Scope 1 transcoders -----------------------------------------------------------------


@pytest.mark.parametrize(("d", "m", "o"), [(6, 10, 4), (8, 8, 8)])
def test_gemma_scope_1_transcoder_matches_the_formula(tmp_path, d, m, o) -> None:
    t = tl.jumprelu_tensors(d, m, o, skip=False)
    x = torch.randn(ROWS, d) * 2
    sae = load_sae(tl.write_gs1_transcoder(tmp_path, t))
    _matches(sae, tl.gs_tc_ref, t, x)
    assert (sae_site(sae), sae_site_out(sae)) == ("layers.3.mlp_in", "layers.3.mlp_out")
    assert sae.cfg.d_out == o and not sae.cfg.skip and sae.cfg.metadata.model_name == "gemma-2-2b"
    if d == m == o:  # square: the transposed decoder has the right shape, the formula differs
        flipped = {**t, "w_dec": t["w_dec"].T}
        assert not torch.allclose(_outputs(sae, x)[1], tl.gs_tc_ref(flipped, x)[1], atol=1e-3)


# -- sparsify transcoders ----------------------------------------------------------------------


@pytest.mark.parametrize("skip", [False, True])
def test_sparsify_transcoder_has_no_input_shift(tmp_path, skip) -> None:
    t = tl.sparsify_tensors(8, 8, skip)
    x = torch.randn(ROWS, 8) * 2
    sae = load_sae(tl.write_sparsify(tmp_path, t, "layers.1.mlp"))
    _matches(sae, tl.sp_tc_ref, t, x)
    assert not sae.cfg.apply_b_dec_to_input and sae.cfg.skip == skip
    assert (sae_site(sae), sae_site_out(sae)) == ("layers.1.mlp_in", "layers.1.mlp_out")
    shifted = tl.sp_tc_ref(t, x, transcode=False)[1]  # the formula with the SAE's shift differs
    assert not torch.allclose(_outputs(sae, x)[1], shifted, atol=1e-3)
    if skip:  # square W_skip: only the formula catches a transpose
        flipped = {**t, "W_skip": t["W_skip"].T}
        assert not torch.allclose(_outputs(sae, x)[1], tl.sp_tc_ref(flipped, x)[1], atol=1e-3)


def test_sparsify_skip_without_transcode_keeps_the_shift(tmp_path) -> None:
    t = tl.sparsify_tensors(6, 10, skip=True)
    sae = load_sae(tl.write_sparsify(tmp_path, t, "layers.2", transcode=False))
    _matches(sae, lambda t, x: tl.sp_tc_ref(t, x, transcode=False), t, torch.randn(ROWS, 6) * 2)
    assert (sae_site(sae), sae_site_out(sae)) == ("layers.2.resid_post", "layers.2.resid_post")


def test_sparsify_transcoder_sites_and_bad_files(tmp_path) -> None:
    sae = load_sae(tl.write_sparsify(tmp_path / "a", tl.sparsify_tensors(6, 10, False), "layers.3"))
    assert (sae_site(sae), sae_site_out(sae)) == ("layers.3.resid_pre", "layers.3.resid_post")
    t = tl.sparsify_tensors(6, 10, skip=False)
    folder = tl.write_sparsify(tmp_path / "b", t, "layers.1.mlp")
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "skip_connection": True}))
    with pytest.raises(
        SaescopeError, match=r"sae.safetensors: .*skip_connection=true, .*no W_skip"
    ):
        load_sae(folder)
    t = {**tl.sparsify_tensors(6, 10, skip=False), "W_skip": tl.rand(6, 5)}
    with pytest.raises(SaescopeError, match=r"tensor W_skip has shape \(6, 5\)"):
        load_sae(tl.write_sparsify(tmp_path / "c", t, "layers.1.mlp"))


# -- a file-format transcoder used end to end --------------------------------------------------


@pytest.mark.parametrize("fmt", ["gemma_scope_2", "sparsify"])
def test_exact_transcoder_in_a_foreign_layout_splices_losslessly(tmp_path, tokenizer, fmt):
    """The exact transcoder of a linearised GPT-2 MLP, written in Gemma Scope 2's or sparsify's
    layout (skip only), loaded back and spliced in as the MLP: the loss does not move."""
    model = linear_mlp_model(tokenizer)
    tc = exact_transcoder(model, skip=True)
    d, m = tc.cfg.d_in, tc.cfg.d_sae
    if fmt == "gemma_scope_2":
        t = {
            "w_enc": tc.W_enc.detach(),
            "w_dec": tc.W_dec.detach(),
            "b_enc": tc.b_enc.detach(),
            "b_dec": tc.b_dec.detach(),
            "threshold": torch.zeros(m),  # relu(pre) * (pre > 0) is the ReLU
            "affine_skip_connection": tc.W_skip.detach().T,
        }
        path = tl.write_gs2_transcoder(tmp_path, t, layer=1)
    else:
        t = {
            "encoder.weight": tc.W_enc.detach().T,
            "encoder.bias": tc.b_enc.detach(),
            "W_dec": tc.W_dec.detach(),
            "b_dec": tc.b_dec.detach(),
            "W_skip": tc.W_skip.detach(),
        }
        path = tl.write_sparsify(tmp_path, t, "layers.1.mlp", k=m)  # k = d_sae: every latent
    loaded = load_sae(path)
    assert sae_site(loaded) == SITE_IN and loaded.cfg.d_in == d
    ids = torch.randint(3, 300, (4, 12))
    stats = spliced_stats(model, loaded, SITE_IN, [ids], lambda x: torch.ones_like(x, dtype=bool))
    assert stats.delta_loss == pytest.approx(0.0, abs=1e-5)
    assert stats.ce_zero is not None and abs(stats.ce_zero - stats.ce_clean) > 1e-3
