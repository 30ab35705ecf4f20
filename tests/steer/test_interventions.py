import pytest
import torch
from conftest import SITE
from tiny_models import VOCAB

from saescope.data import keep_positions
from saescope.errors import SaescopeError
from saescope.evaluate.splice import _replace_kept, reconstruct_with
from saescope.models import edit_sites, run_with_cache
from saescope.steer import (
    Edit,
    FeatureIntervention,
    Positions,
    UnitIntervention,
    VectorIntervention,
    ablate,
    add,
    clamp,
    intervene,
    scale,
)

BOS = 2


def _ids(batch: int = 2, length: int = 10) -> torch.Tensor:
    ids = torch.randint(4, VOCAB, (batch, length))
    ids[:, 0] = BOS
    return ids


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.hf.modules())


def _logits(model, ids, interventions=()):
    with intervene(model, interventions):
        return model.hf(ids).logits


def test_doing_nothing_leaves_logits_bit_identical(gemma, sae) -> None:
    ids = _ids()
    clean = gemma.hf(ids).logits
    noops = [
        [],
        [FeatureIntervention(sae, ())],
        [FeatureIntervention(sae, (add(3, 0.0), scale(7, 1.0), add(100, 0.0)))],
        [VectorIntervention(SITE, torch.randn(64), 0.0)],
        [UnitIntervention("layers.0.mlp_act", (add(5, 0.0), scale(9, 1.0)))],
    ]
    for interventions in noops:
        assert torch.equal(_logits(gemma, ids, interventions), clean), interventions


def test_clamping_a_feature_to_its_current_value_changes_nothing(gemma, sae) -> None:
    ids = _ids(batch=1)
    t = 5
    x = run_with_cache(gemma, ids, [SITE])[SITE][0, t : t + 1]  # (1, d)
    with torch.no_grad():
        latents = sae.encode(x)
    feature, value = int(latents.indices[0]), float(latents.values[0])
    at_t = Positions(indices=(t,))
    clean = gemma.hf(ids).logits
    same = _logits(gemma, ids, [FeatureIntervention(sae, (clamp(feature, value),), at_t)])
    assert torch.equal(same, clean)
    moved = _logits(gemma, ids, [FeatureIntervention(sae, (clamp(feature, value + 5),), at_t)])
    assert torch.equal(moved[0, :t], clean[0, :t]) and not torch.equal(moved, clean)


@pytest.mark.parametrize("error_term", [True, False])
def test_feature_edits_equal_the_naive_dense_computation(sae, error_term) -> None:
    x = torch.randn(6, 64) * 3
    edits = (clamp(3, 4.0), scale(7, -2.0), ablate(11), add(20, 1.5), add(3, 1.0))
    edited = FeatureIntervention(sae, edits, error_term=error_term).edited(x)
    z = sae.encode_dense(x)  # (6, d_sae)
    z_new = z.clone()
    z_new[:, 3] = 4.0 + 1.0
    z_new[:, 7] *= -2.0
    z_new[:, 11] = 0.0
    z_new[:, 20] += 1.5
    base = x if error_term else z @ sae.W_dec + sae.b_dec
    want = base + (z_new - z) @ sae.W_dec
    torch.testing.assert_close(edited, want, rtol=1e-5, atol=1e-5)


def test_without_the_error_term_the_model_runs_on_the_reconstruction(gemma, sae) -> None:
    ids = _ids()
    keep = keep_positions(ids, gemma.tokenizer)
    with edit_sites(gemma, [(SITE, _replace_kept(keep, reconstruct_with(sae)))]):
        spliced = gemma.hf(ids).logits
    ours = _logits(gemma, ids, [FeatureIntervention(sae, (), error_term=False)])
    torch.testing.assert_close(ours, spliced, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, gemma.hf(ids).logits, atol=1e-3)


def test_positions_are_respected_and_bos_is_left_alone(gemma) -> None:
    ids = _ids()
    clean = run_with_cache(gemma, ids, [SITE])[SITE]
    vector = torch.randn(64)
    cases = {
        Positions(): [(b, t) for b in range(2) for t in range(1, 10)],
        Positions(indices=(0, 3, 7)): [(b, t) for b in range(2) for t in (3, 7)],
        Positions(indices=(0, 3), special=True): [(b, t) for b in range(2) for t in (0, 3)],
    }
    for where, expected in cases.items():
        with intervene(gemma, [VectorIntervention(SITE, vector, 2.0, where)]):
            steered = run_with_cache(gemma, ids, [SITE])[SITE]
        changed = (steered != clean).any(-1).nonzero().tolist()
        assert sorted(map(tuple, changed)) == sorted(expected), where
        b, t = expected[0]
        torch.testing.assert_close(steered[b, t], clean[b, t] + 2.0 * vector)


def test_positions_count_from_each_rows_first_token_under_left_padding(gemma) -> None:
    short, long = _ids(1, 6), _ids(1, 9)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1)  # pad id 0
    ids, mask = torch.cat([padded, long]), torch.ones(2, 9, dtype=torch.long)
    mask[0, :3] = 0
    where = Positions(indices=(2,))
    with intervene(gemma, [VectorIntervention(SITE, torch.randn(64), 3.0, where)]):
        steered = run_with_cache(gemma, ids, [SITE], attention_mask=mask)[SITE]
    clean = run_with_cache(gemma, ids, [SITE], attention_mask=mask)[SITE]
    changed = (steered != clean).any(-1).nonzero().tolist()
    assert changed == [[0, 5], [1, 2]]


def test_aligned_vectors_add_row_p_at_token_p(gemma) -> None:
    ids = _ids(1, 8)
    vectors = torch.randn(3, 64)
    clean = run_with_cache(gemma, ids, [SITE])[SITE]
    with intervene(gemma, [VectorIntervention(SITE, vectors, 1.0, Positions(special=True))]):
        steered = run_with_cache(gemma, ids, [SITE])[SITE]
    torch.testing.assert_close(steered[0, :3], clean[0, :3] + vectors)
    assert torch.equal(steered[0, 3:], clean[0, 3:])


def test_unit_edits(gemma) -> None:
    ids = _ids()
    site = "layers.1.mlp_act"
    clean = run_with_cache(gemma, ids, [site])[site]
    edits = (clamp(5, 7.0), add(6, 1.0), scale(7, 3.0), ablate(8))
    with intervene(gemma, [UnitIntervention(site, edits)]):
        out = run_with_cache(gemma, ids, [site])[site]
    rest = [u for u in range(96) if u not in (5, 6, 7, 8)]
    assert torch.equal(out[..., rest], clean[..., rest])
    assert torch.equal(out[:, 0], clean[:, 0])  # BOS
    assert (out[:, 1:, 5] == 7.0).all() and (out[:, 1:, 8] == 0).all()
    torch.testing.assert_close(out[:, 1:, 6], clean[:, 1:, 6] + 1)
    torch.testing.assert_close(out[:, 1:, 7], clean[:, 1:, 7] * 3)


def test_several_sites_at_once_and_nesting_compose(gemma, sae) -> None:
    ids = _ids()
    a = FeatureIntervention(sae, (clamp(4, 9.0),))
    b = UnitIntervention("layers.0.mlp_act", (clamp(2, -3.0),))
    together = _logits(gemma, ids, [b, a])
    with intervene(gemma, [b]), intervene(gemma, [a]):
        nested = gemma.hf(ids).logits
    assert torch.equal(together, nested)
    assert not torch.allclose(together, _logits(gemma, ids, [a]))


class _Boom:
    def site(self, model):
        return model.site("layers.1.resid_post")

    def site_fn(self, model, tracker):
        def fn(x):
            raise RuntimeError("boom")

        return fn


def test_hooks_are_removed_after_an_exception(gemma, sae) -> None:
    ids = _ids()
    clean, before = gemma.hf(ids).logits, _hooks(gemma)
    with pytest.raises(RuntimeError, match="boom"), intervene(gemma, [_Boom()]):
        gemma.hf(ids)
    with (
        pytest.raises(ValueError, match="inside"),
        intervene(gemma, [FeatureIntervention(sae, (clamp(1, 50.0),))]),
    ):
        raise ValueError("inside the block")
    assert _hooks(gemma) == before
    assert torch.equal(gemma.hf(ids).logits, clean)


def test_bad_interventions_are_refused_with_what_was_expected(gemma, sae) -> None:
    with (
        pytest.raises(SaescopeError, match="128 latents"),
        intervene(gemma, [FeatureIntervention(sae, (clamp(128, 1.0),))]),
    ):
        pass
    with (
        pytest.raises(SaescopeError, match="d_in=64"),
        intervene(gemma, [FeatureIntervention(sae, (), at="layers.1.mlp_act")]),
    ):
        pass
    with (
        pytest.raises(SaescopeError, match="expected a vector"),
        intervene(gemma, [VectorIntervention(SITE, torch.randn(63))]),
    ):
        pass
    with pytest.raises(SaescopeError, match="unknown edit"):
        Edit(1, "double", 2.0)
    with pytest.raises(SaescopeError, match="INDEX=VALUE"):
        Edit.parse("8249:100", "clamp")
    assert Edit.parse("8249=100", "clamp") == clamp(8249, 100.0)
    with pytest.raises(SaescopeError, match=">= 0"):
        Positions(indices=(-1,))
