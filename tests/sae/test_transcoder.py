import json

import pytest
import torch
from transcoders import SITE_IN, SITE_OUT, exact_transcoder, linear_mlp_model

from saescope.errors import SaescopeError
from saescope.models import run_with_cache
from saescope.sae import SAEConfig, build_sae, load_sae, sae_site, sae_site_out, save_sae


@pytest.mark.parametrize("skip", [False, True])
def test_exact_transcoder_reproduces_the_mlp_output(tokenizer, skip) -> None:
    model = linear_mlp_model(tokenizer)
    ids = torch.randint(3, 300, (2, 12))
    acts = run_with_cache(model, ids, [SITE_IN, SITE_OUT])
    tc = exact_transcoder(model, skip=skip)
    with torch.no_grad():
        out = tc(acts[SITE_IN].clone()).x_hat  # (B, T, d_out)
    assert out.shape == acts[SITE_OUT].shape
    assert (out - acts[SITE_OUT]).abs().max() < 1e-5


def test_transcoder_output_width_differs_from_input() -> None:
    cfg = SAEConfig(
        d_in=8, d_sae=16, architecture="topk", k=3, apply_b_dec_to_input=False, d_out=5, skip=True
    )
    tc = build_sae(cfg, seed=0)
    assert tc.W_dec.shape == (16, 5) and tc.b_dec.shape == (5,) and tc.W_skip.shape == (5, 8)
    x = torch.randn(4, 7, 8)
    with torch.no_grad():
        tc.W_skip.normal_()
        out = tc(x)
        by_hand = tc.decode(out.latents).reshape(4, 7, 5) + x @ tc.W_skip.t()
    assert out.x_hat.shape == (4, 7, 5)
    torch.testing.assert_close(out.x_hat, by_hand)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(skip=True), "skip=True needs d_out"),
        (dict(d_out=4, apply_b_dec_to_input=True), "apply_b_dec_to_input=False"),
        (dict(d_out=0, apply_b_dec_to_input=False), "d_out must be >= 1"),
        (dict(d_out=4.0, apply_b_dec_to_input=False), "d_out must be an integer"),
    ],
)
def test_bad_transcoder_configs_are_refused(kwargs, message) -> None:
    with pytest.raises(SaescopeError, match=message):
        SAEConfig(d_in=8, d_sae=16, architecture="relu", **kwargs)


@pytest.mark.parametrize(
    ("architecture", "skip", "saelens"),
    [
        ("relu", False, "transcoder"),
        ("relu", True, "skip_transcoder"),
        ("jumprelu", False, "jumprelu_transcoder"),
        ("jumprelu", True, "jumprelu_skip_transcoder"),
        ("topk", True, "topk_skip_transcoder"),
    ],
)
def test_transcoder_save_load_round_trip_in_saelens_layout(tmp_path, architecture, skip, saelens):
    meta_in = dict(
        site=SITE_IN,
        site_out=SITE_OUT,
        hook_name="blocks.1.ln2.hook_normalized",
        hook_name_out="blocks.1.hook_mlp_out",
    )
    from saescope.sae import SAEMetadata

    cfg = SAEConfig(
        d_in=8,
        d_sae=16,
        architecture=architecture,
        k=4 if architecture == "topk" else None,
        apply_b_dec_to_input=False,
        d_out=6,
        skip=skip,
        metadata=SAEMetadata(**meta_in),
    )
    tc = build_sae(cfg, seed=1)
    with torch.no_grad():
        for p in tc.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_sae(tc, tmp_path)
    data = json.loads((tmp_path / "cfg.json").read_text())
    assert data["architecture"] == saelens and data["d_out"] == 6
    assert data["metadata"]["hook_name_out"] == "blocks.1.hook_mlp_out"
    back = load_sae(tmp_path)
    assert back.cfg == tc.cfg
    x = torch.randn(5, 8)
    torch.testing.assert_close(back(x).x_hat, tc(x).x_hat)
    assert sae_site(back) == SITE_IN and sae_site_out(back) == SITE_OUT
    # SAELens itself writes no saescope_architecture: the name alone must say it all.
    del data["saescope_architecture"]
    if architecture != "topk":
        (tmp_path / "cfg.json").write_text(json.dumps(data))
        assert load_sae(tmp_path).cfg == tc.cfg


def test_saelens_transcoder_cfg_keeps_apply_b_dec_default(tmp_path) -> None:
    """SAELens leaves apply_b_dec_to_input=True in a transcoder's cfg.json and ignores it."""
    tc = build_sae(
        SAEConfig(d_in=8, d_sae=16, architecture="relu", apply_b_dec_to_input=False, d_out=6),
        seed=0,
    )
    save_sae(tc, tmp_path)
    data = json.loads((tmp_path / "cfg.json").read_text())
    data["apply_b_dec_to_input"] = True
    (tmp_path / "cfg.json").write_text(json.dumps(data))
    assert load_sae(tmp_path).cfg.apply_b_dec_to_input is False


def test_transcoder_without_output_site_is_named(tmp_path) -> None:
    tc = build_sae(
        SAEConfig(d_in=8, d_sae=16, architecture="relu", apply_b_dec_to_input=False, d_out=6),
        seed=0,
    )
    with pytest.raises(SaescopeError, match=r"metadata\.site_out or metadata\.hook_name_out"):
        sae_site_out(tc, tmp_path)


def test_transcoder_shapes_mismatch_on_load_is_named(tmp_path) -> None:
    tc = build_sae(
        SAEConfig(d_in=8, d_sae=16, architecture="relu", apply_b_dec_to_input=False, d_out=6),
        seed=0,
    )
    save_sae(tc, tmp_path)
    data = json.loads((tmp_path / "cfg.json").read_text())
    data["d_out"] = 7
    (tmp_path / "cfg.json").write_text(json.dumps(data))
    with pytest.raises(SaescopeError, match="W_dec has shape"):
        load_sae(tmp_path)
