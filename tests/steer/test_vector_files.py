"""Steering vectors as files, the aligned vector against a hand computation, and the pieces the
frontier compares (a vector's feature part and the vector with the feature projected out)."""

import pytest
import torch
from conftest import SITE
from safetensors.torch import save_file

from saescope.errors import SaescopeError
from saescope.models import run_with_cache
from saescope.sae import SAEConfig, SAEMetadata, build_sae
from saescope.steer import (
    SteeringVector,
    contrastive_vector,
    decompose,
    feature_part,
    frontier_conditions,
    load_vector,
    project_out,
    save_vector,
)


def test_aligned_vector_is_the_position_wise_difference(gemma) -> None:
    tok = gemma.tokenizer
    pos, neg = "<bos>Bridges span rivers", "<bos>Watson"  # both start with BOS
    long = tok(pos)["input_ids"]
    short = tok(neg)["input_ids"]
    assert long[0] == short[0] == tok.bos_token_id and len(short) < len(long)
    space = tok(" ", add_special_tokens=False)["input_ids"]
    padded = short + space * (len(long) - len(short))  # the shorter prompt, padded with spaces
    a = run_with_cache(gemma, torch.tensor([long]), [SITE])[SITE][0].float()  # (P, d)
    b = run_with_cache(gemma, torch.tensor([padded]), [SITE])[SITE][0].float()
    aligned = contrastive_vector(gemma, SITE, pos, neg, reduce="aligned")
    torch.testing.assert_close(aligned, a - b)
    assert aligned.shape == (len(long), 64)
    assert torch.equal(aligned[0], torch.zeros(64))  # BOS sees only itself: the same row


def test_vector_file_round_trip(gemma, tmp_path) -> None:
    v = SteeringVector(torch.randn(3, 64), SITE, "tiny", "aligned", ("Anger",), ("Calm",))
    path = save_vector(v, tmp_path / "v.safetensors")
    back = load_vector(path, gemma, site="blocks.1.hook_resid_post")  # either spelling
    assert torch.equal(back.vector, v.vector)
    assert (back.site, back.model, back.reduce) == (SITE, "tiny", "aligned")
    assert (back.positive, back.negative) == (("Anger",), ("Calm",))


def test_bad_vector_files_are_refused(gemma, tmp_path) -> None:
    good = save_vector(SteeringVector(torch.randn(64), SITE), tmp_path / "v.safetensors")
    with pytest.raises(SaescopeError, match=r"taken at layers\.1\.resid_post, not layers\.0"):
        load_vector(good, gemma, site="layers.0.resid_post")
    narrow = save_vector(SteeringVector(torch.randn(32), SITE), tmp_path / "narrow.safetensors")
    with pytest.raises(SaescopeError, match=r"width 32, layers\.1\.resid_post of tiny-gemma3 has"):
        load_vector(narrow, gemma)
    far = save_vector(SteeringVector(torch.randn(64), "layers.9.resid_post"), tmp_path / "f")
    with pytest.raises(SaescopeError, match="3 layers"):
        load_vector(far, gemma)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(SaescopeError, match="truncated or not a vector"):
        load_vector(truncated, gemma)
    other = tmp_path / "other.safetensors"
    save_file({"W_dec": torch.randn(4, 64)}, str(other))
    with pytest.raises(SaescopeError, match="not a saescope steering vector"):
        load_vector(other)
    with pytest.raises(SaescopeError, match="no steering vector file"):
        load_vector(tmp_path / "missing.safetensors")
    with pytest.raises(SaescopeError, match="nan or inf"):
        SteeringVector(torch.full((64,), float("nan")), SITE)


def test_projecting_a_feature_out_leaves_the_vector_orthogonal_to_its_row(sae) -> None:
    v = torch.randn(64) + 3 * sae.W_dec[5].detach()
    without = project_out(v, sae, [5])
    row = sae.W_dec[5].detach()
    assert abs(float(without @ row)) < 1e-4 * float(v.norm() * row.norm())
    part = feature_part(v, sae, [5])  # along the row, at the vector's norm
    assert float(torch.cosine_similarity(part, row, dim=0)) == pytest.approx(1.0, abs=1e-5)
    assert float(part.norm()) == pytest.approx(float(v.norm()), rel=1e-5)
    aligned = torch.stack([torch.zeros(64), v, -v])  # (P, d): each row on its own
    rows = feature_part(aligned, sae, [5])
    assert torch.equal(rows[0], torch.zeros(64))
    torch.testing.assert_close(rows[2], -part)
    conditions = frontier_conditions(aligned, sae, [5])
    assert list(conditions) == ["vector", "feature 5", "vector without feature 5"]
    assert (conditions["vector without feature 5"] @ row).abs().max() < 1e-3


def test_decomposition_reports_the_cumulative_share(sae) -> None:
    v = 2 * sae.W_dec[3].detach() - sae.W_dec[40].detach() + 0.1 * torch.randn(64)
    parts = decompose(v, sae, k=4)
    assert parts.cumulative is not None and parts.cumulative.shape == (4,)
    assert bool((parts.cumulative.diff() >= -1e-6).all())  # more rows never explain less
    assert float(parts.cumulative[-1]) == pytest.approx(parts.explained, abs=1e-5)


def test_an_sae_of_another_site_is_refused(sae) -> None:
    other = build_sae(
        SAEConfig(
            d_in=64,
            d_sae=128,
            architecture="topk",
            k=8,
            metadata=SAEMetadata(hook_name="layers.0.resid_post"),
        ),
        seed=1,
    )
    v = SteeringVector(torch.randn(64), SITE)
    v.check_sae(sae)
    with pytest.raises(SaescopeError, match=r"trained at layers\.0\.resid_post"):
        v.check_sae(other)
