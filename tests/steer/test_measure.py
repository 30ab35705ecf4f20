import pytest
import torch
from conftest import SITE

from saescope.data import ContextConfig, keep_positions, pack_contexts
from saescope.evaluate import spliced_stats
from saescope.steer import (
    FeatureIntervention,
    GenerationConfig,
    SteeringPoint,
    VectorIntervention,
    clamp,
    mentions,
    pareto_front,
    plot_steering,
    steered_loss,
    steering_curve,
    success_rate,
)


def test_vocabulary_matches_whole_words_and_plurals() -> None:
    test = mentions(["sea", "wave", "beach"])
    assert test("The SEA was calm") and test("two seas") and test("waves broke") and test("beaches")
    assert not test("season") and not test("research") and not test("microwave")
    assert success_rate(["by the sea", "a dog", "waves", "nothing"], ["sea", "wave"]) == 0.5


def _batches(model, corpus):
    ids = torch.stack(list(pack_contexts(corpus, model.tokenizer, ContextConfig(16)))[:8])
    return list(ids.split(4))


def test_steered_loss_is_the_clean_loss_at_coefficient_zero(gemma, sae, corpus) -> None:
    batches = _batches(gemma, corpus)
    keep = lambda x: keep_positions(x, gemma.tokenizer)  # noqa: E731
    reference = spliced_stats(gemma, sae, SITE, batches, keep, ablations=False)
    clean = steered_loss(gemma, [], batches)
    assert clean == pytest.approx(reference.ce_clean, rel=1e-6)
    assert steered_loss(gemma, [VectorIntervention(SITE, torch.randn(64), 0.0)], batches) == clean
    spliced = steered_loss(gemma, [FeatureIntervention(sae, (), error_term=False)], batches)
    assert spliced == pytest.approx(reference.ce_spliced, rel=1e-4)
    steered = steered_loss(gemma, [VectorIntervention(SITE, torch.randn(64), 30.0)], batches)
    assert steered != pytest.approx(clean, rel=1e-4)  # (a random model: either direction)


def test_steering_curve_and_pareto_front(gemma, sae, corpus, tmp_path) -> None:
    batches = _batches(gemma, corpus)[:1]
    config = GenerationConfig(max_new_tokens=5, samples=3, sample=True)
    curve = steering_curve(
        gemma,
        lambda c: [FeatureIntervention(sae, (clamp(5, c),))],
        [0.0, 20.0],
        ["Bridges span"],
        ["the"],
        batches,
        config,
    )
    assert [p.coefficient for p in curve] == [0.0, 20.0]
    assert all(len(p.texts) == 3 and 0 <= p.success <= 1 for p in curve)
    points = [
        SteeringPoint(0, 0.0, 2.0, ()),
        SteeringPoint(1, 0.5, 2.1, ()),
        SteeringPoint(2, 0.4, 2.5, ()),  # dominated by coefficient 1
        SteeringPoint(3, 0.9, 3.0, ()),
    ]
    assert [p.coefficient for p in pareto_front(points)] == [0, 1, 3]
    png = plot_steering({"feature": points, "vector": curve}, tmp_path / "p.png", clean_loss=2.0)
    assert png.stat().st_size > 1000
