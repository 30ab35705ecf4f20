"""Sampling draws from its own generator: reproducible from the seed, global state untouched."""

import pytest
import torch
from conftest import SITE

from saescope.interpret.lens import continue_text
from saescope.steer import GenerationConfig, VectorIntervention, generate_with


def test_sampled_generation_leaves_the_global_random_state_alone(gemma) -> None:
    config = GenerationConfig(max_new_tokens=5, samples=3, sample=True, seed=7)
    steer = [VectorIntervention(SITE, torch.randn(64), 2.0)]
    before = torch.random.get_rng_state()
    [a] = generate_with(gemma, "Bridges span", steer, config)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(123)  # another global seed must not change the draws
    [b] = generate_with(gemma, "Bridges span", steer, config)
    assert torch.equal(a.tokens, b.tokens)
    [c] = generate_with(gemma, "Bridges span", steer, GenerationConfig(5, 3, True, seed=8))
    assert not torch.equal(a.tokens, c.tokens)


def test_a_tiny_top_p_or_temperature_samples_the_greedy_token(gemma) -> None:
    [greedy] = generate_with(gemma, "Bridges span", [], GenerationConfig(max_new_tokens=5))
    for config in (
        GenerationConfig(max_new_tokens=5, samples=2, sample=True, top_p=1e-6),
        GenerationConfig(max_new_tokens=5, samples=2, sample=True, temperature=1e-4),
    ):
        [sampled] = generate_with(gemma, "Bridges span", [], config)
        assert torch.equal(sampled.tokens, greedy.tokens.expand(2, -1))


def test_continue_text_samples_without_seeding_the_process(gemma) -> None:
    before = torch.random.get_rng_state()
    a = continue_text(gemma, "Bridges span", 6, sample=True, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(99)
    assert continue_text(gemma, "Bridges span", 6, sample=True, seed=3) == a


@pytest.mark.parametrize(
    "temperature,top_p", [(float("nan"), None), (0.0, None), (1.0, 0.0), (1.0, float("nan"))]
)
def test_sampling_settings_that_mean_nothing_are_refused(temperature, top_p) -> None:
    from saescope.errors import SaescopeError
    from saescope.interpret.sampling import SeededSampler

    with pytest.raises(SaescopeError, match="must be"):
        SeededSampler(0, torch.device("cpu"), temperature, top_p)
