import pytest
import torch

from saescope.data import ContextConfig, keep_positions, pack_contexts
from saescope.errors import SaescopeError
from saescope.evaluate import spliced_stats
from saescope.evaluate.splice import _replace_kept, reconstruct_with
from saescope.models import edit_sites, run_with_cache
from saescope.sae import SAEConfig, build_sae

SITE = "layers.1.resid_post"


def identity_sae(d: int):
    """x = relu(x) - relu(-x): an exact 'SAE' with 2d latents."""
    sae = build_sae(SAEConfig(d_in=d, d_sae=2 * d, architecture="relu", apply_b_dec_to_input=False))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def zero_sae(d: int):
    sae = build_sae(SAEConfig(d_in=d, d_sae=8, architecture="relu"))
    with torch.no_grad():
        for p in sae.parameters():
            p.zero_()
    return sae.eval()


def _data(model, corpus):
    ids = torch.stack(list(pack_contexts(corpus, model.tokenizer, ContextConfig(16)))[:12])
    keep = lambda x: keep_positions(x, model.tokenizer)  # noqa: E731
    return list(ids.split(4)), keep


def test_identity_sae_recovers_all_the_loss_and_zero_sae_none(model, corpus) -> None:
    batches, keep = _data(model, corpus)
    ident = spliced_stats(model, identity_sae(64), SITE, batches, keep)
    assert ident.loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert ident.delta_loss == pytest.approx(0.0, abs=1e-5) and ident.kl == pytest.approx(
        0, abs=1e-6
    )
    assert ident.ce_zero > ident.ce_clean and ident.ce_mean is not None
    zero = spliced_stats(model, zero_sae(64), SITE, batches, keep)
    assert zero.loss_recovered == pytest.approx(0.0, abs=1e-6)
    assert zero.ce_clean == pytest.approx(ident.ce_clean)


def test_splicing_touches_only_kept_positions_of_its_site(model, corpus) -> None:
    batches, keep = _data(model, corpus)
    ids = batches[0]
    clean = run_with_cache(model, ids, ["layers.0.resid_post", SITE])
    clean_logits = model.hf(ids).logits
    splice = _replace_kept(keep(ids), reconstruct_with(zero_sae(64)))
    with edit_sites(model, [(SITE, splice)]):
        spliced = run_with_cache(model, ids, ["layers.0.resid_post", "layers.2.resid_pre"])
    torch.testing.assert_close(
        spliced["layers.0.resid_post"], clean["layers.0.resid_post"], rtol=0, atol=0
    )
    excluded = ~keep(ids)
    assert excluded.any()
    torch.testing.assert_close(
        spliced["layers.2.resid_pre"][excluded], clean[SITE][excluded], rtol=0, atol=0
    )
    assert (spliced["layers.2.resid_pre"][keep(ids)] == 0).all()
    torch.testing.assert_close(model.hf(ids).logits, clean_logits, rtol=0, atol=0)  # removed


def test_mismatched_sae_is_refused_before_any_forward(model, corpus) -> None:
    batches, keep = _data(model, corpus)
    with pytest.raises(SaescopeError, match="d_in=32"):
        spliced_stats(model, zero_sae(32), SITE, batches, keep)
    with pytest.raises(SaescopeError, match="no scored positions"):
        spliced_stats(model, zero_sae(64), SITE, [], keep)


def test_evaluate_in_one_call(model, corpus) -> None:
    from saescope.evaluate import evaluate
    from saescope.sae import SAEMetadata

    batches, keep = _data(model, corpus)
    sae = identity_sae(64)
    sae.cfg = SAEConfig(
        d_in=64,
        d_sae=128,
        architecture="relu",
        apply_b_dec_to_input=False,
        metadata=SAEMetadata(hook_name="blocks.1.hook_resid_post"),
    )
    acts = [run_with_cache(model, b, [SITE])[SITE][keep(b)] for b in batches]
    result = evaluate(sae, acts, model, batches, name="identity")
    assert result.site == SITE and result.reconstruction.fvu == pytest.approx(0, abs=1e-10)
    assert result.spliced.loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert result.to_dict()["geometry"]["duplicate_fraction"] == 0.0
