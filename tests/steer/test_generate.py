import torch
from conftest import SITE

from saescope.steer import (
    GENERATED,
    FeatureIntervention,
    GenerationConfig,
    Positions,
    VectorIntervention,
    clamp,
    generate_with,
    intervene,
)

PROMPTS = ["Bridges span", "The reliability of Wikipedia is"]


def test_generation_with_the_kv_cache_equals_generation_without(gemma, sae) -> None:
    steer = [
        FeatureIntervention(sae, (clamp(5, 30.0),)),
        VectorIntervention(SITE, torch.randn(64), 4.0, GENERATED),
    ]
    runs = {
        cache: generate_with(
            gemma, PROMPTS, steer, GenerationConfig(max_new_tokens=8, use_cache=cache)
        )
        for cache in (True, False)
    }
    for cached, uncached in zip(runs[True], runs[False], strict=True):
        assert torch.equal(cached.tokens, uncached.tokens)
    clean = generate_with(gemma, PROMPTS, [], GenerationConfig(max_new_tokens=8))
    assert any(not torch.equal(c.tokens, s.tokens) for c, s in zip(clean, runs[True], strict=True))


def test_generated_only_edits_leave_the_prompt_and_first_token_alone(gemma) -> None:
    vector = torch.randn(64) * 50
    config = GenerationConfig(max_new_tokens=6)
    clean = generate_with(gemma, PROMPTS, [], config)
    late = generate_with(gemma, PROMPTS, [VectorIntervention(SITE, vector, 1.0, GENERATED)], config)
    for c, s in zip(clean, late, strict=True):
        # the first new token is predicted from the prompt alone, which was not edited
        assert c.tokens[0, 0] == s.tokens[0, 0]
    ids = gemma.tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with intervene(gemma, [VectorIntervention(SITE, vector, 1.0, GENERATED)]):
        outside = gemma.hf(ids).logits  # no generation: every token is prompt, none edited
    assert torch.equal(outside, gemma.hf(ids).logits)


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(gemma) -> None:
    steer = [VectorIntervention(SITE, torch.randn(64), 3.0, Positions(indices=(1, 2, 6)))]
    config = GenerationConfig(max_new_tokens=6)
    batched = generate_with(gemma, PROMPTS, steer, config)
    for prompt, rollouts in zip(PROMPTS, batched, strict=True):
        [alone] = generate_with(gemma, prompt, steer, config)
        assert torch.equal(alone.tokens, rollouts.tokens), prompt


def test_sampled_rollouts_are_reproducible_and_differ_between_samples(gemma, sae) -> None:
    config = GenerationConfig(max_new_tokens=6, samples=4, sample=True, seed=3)
    steer = [FeatureIntervention(sae, (clamp(5, 10.0),))]
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in gemma.hf.modules())
    [a] = generate_with(gemma, PROMPTS[0], steer, config)
    assert hooks == sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in gemma.hf.modules()
    )
    [b] = generate_with(gemma, PROMPTS[0], steer, config)
    assert torch.equal(a.tokens, b.tokens) and a.tokens.shape == (4, 6)
    assert len({tuple(row.tolist()) for row in a.tokens}) > 1
    assert len(a.texts) == 4 and a.prompt == PROMPTS[0]
