"""Steering a transcoder's latents: read at the MLP's input, written at its output."""

import pytest
import torch
from tiny_models import VOCAB
from transcoders import SITE_IN, SITE_OUT, exact_transcoder, linear_mlp_model

from saescope.errors import SaescopeError
from saescope.models import run_with_cache
from saescope.steer import FeatureIntervention, Positions, add, clamp, intervene

BOS = 2


def _ids() -> torch.Tensor:
    ids = torch.randint(4, VOCAB, (2, 10))
    ids[:, 0] = BOS
    return ids


def _run(model, ids, interventions=()):
    with intervene(model, interventions):
        return model.hf(ids).logits


@pytest.mark.parametrize("error_term", [True, False])
def test_a_latent_edit_changes_only_positions_from_the_edit_on(tokenizer, error_term) -> None:
    model = linear_mlp_model(tokenizer)
    tc = exact_transcoder(model)
    ids = _ids()
    clean = _run(model, ids)
    edit = FeatureIntervention(tc, (clamp(3, 5.0),), Positions(indices=(6,)), error_term)
    steered = _run(model, ids, [edit])
    # causal model: positions before the edited one see nothing of it
    torch.testing.assert_close(steered[:, :6], clean[:, :6], atol=1e-5, rtol=0)
    assert (steered[:, 6:] - clean[:, 6:]).abs().amax() > 1e-3


def test_the_edit_writes_the_latents_decoder_row_at_the_output_site(tokenizer) -> None:
    model = linear_mlp_model(tokenizer)
    tc = exact_transcoder(model, skip=True)
    with torch.no_grad():
        tc.W_dec.normal_()  # the skip does the MLP; the decoder rows are free directions
    ids = _ids()
    clean = run_with_cache(model, ids, [SITE_IN, SITE_OUT])
    with intervene(model, [FeatureIntervention(tc, (add(7, 2.0),), Positions(indices=(4,)))]):
        got = run_with_cache(model, ids, [SITE_IN, SITE_OUT])
    torch.testing.assert_close(got[SITE_IN], clean[SITE_IN])  # the input is only read
    delta = got[SITE_OUT] - clean[SITE_OUT]
    torch.testing.assert_close(delta[:, 4], (2.0 * tc.W_dec[7]).expand(2, -1), atol=1e-5, rtol=0)
    assert delta[:, :4].abs().max() == 0


def test_no_edit_without_error_term_runs_on_the_exact_transcoder(tokenizer) -> None:
    model = linear_mlp_model(tokenizer)
    tc = exact_transcoder(model, skip=True)
    ids = _ids()
    clean = _run(model, ids)
    same = _run(model, ids, [FeatureIntervention(tc, (add(0, 0.0),), error_term=False)])
    torch.testing.assert_close(same, clean, atol=1e-4, rtol=0)


def test_a_transcoder_written_before_its_input_is_refused(tokenizer) -> None:
    model = linear_mlp_model(tokenizer)
    tc = exact_transcoder(model)
    bad = FeatureIntervention(tc, (clamp(0, 1.0),), at="layers.1.attn_out")
    with pytest.raises(SaescopeError, match=r"before its input site layers\.1\.mlp_in"):
        _run(model, _ids(), [bad])
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.hf.modules())
