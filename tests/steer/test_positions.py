"""Position bookkeeping through ``generate``: edits restricted to generated tokens or to token
indices must land, with the cache on or off, whatever transformers calls its keywords."""

from dataclasses import dataclass, field

import pytest
import torch
from conftest import SITE
from tiny_models import tiny_model

from saescope.errors import SaescopeError
from saescope.steer import (
    GENERATED,
    GenerationConfig,
    Positions,
    VectorIntervention,
    generate_with,
    intervene,
)

PROMPT = "Bridges span"
FAMILIES = ("gemma3", "llama", "gpt2", "qwen3")


@dataclass(frozen=True, eq=False)
class Recorder:
    """An intervention that edits nothing and records the token indices it was given."""

    at: str
    positions: Positions
    seen: list = field(default_factory=list)

    def site(self, model):
        return model.site(self.at)

    def site_fn(self, model, tracker):
        def fn(x):
            self.seen.append(tracker.pos[tracker.mask(self.positions)].tolist())

        return fn


@pytest.mark.parametrize("family", FAMILIES)
def test_an_edit_of_generated_tokens_changes_a_single_prompts_continuation(
    family, tokenizer
) -> None:
    # The 5.24 regression: one unpadded prompt, no attention mask passed, every generated token
    # counted as position 0 = prompt, so GENERATED edited nothing and steered == clean.
    model = tiny_model(family, tokenizer)
    vector = torch.randn(64) * 50
    config = GenerationConfig(max_new_tokens=6)
    [clean] = generate_with(model, PROMPT, [], config)
    steer = [VectorIntervention(SITE, vector, 1.0, GENERATED)]
    for cache in (True, False):
        [steered] = generate_with(
            model, PROMPT, steer, GenerationConfig(max_new_tokens=6, use_cache=cache)
        )
        assert steered.tokens[0, 0] == clean.tokens[0, 0]  # predicted from the unedited prompt
        assert not torch.equal(steered.tokens, clean.tokens), (family, cache)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_edit_at_one_generated_index_lands_there_only(family, tokenizer) -> None:
    model = tiny_model(family, tokenizer)
    n_prompt = int(model.tokenizer(PROMPT, return_tensors="pt")["attention_mask"].sum())
    index = n_prompt + 2  # the third new token: its edit can first change the fourth
    where = Positions(indices=(index,))
    edit = VectorIntervention(SITE, torch.randn(64) * 50, 1.0, where)
    recorder = Recorder(SITE, where)
    [clean] = generate_with(model, PROMPT, [], GenerationConfig(max_new_tokens=6))
    [steered] = generate_with(model, PROMPT, [recorder, edit], GenerationConfig(max_new_tokens=6))
    assert [s for s in recorder.seen if s] == [[index]]
    assert torch.equal(steered.tokens[0, :3], clean.tokens[0, :3])
    assert not torch.equal(steered.tokens, clean.tokens), family


def test_positions_that_generation_never_reaches_are_refused(gemma) -> None:
    n_prompt = int(gemma.tokenizer(PROMPT, return_tensors="pt")["attention_mask"].sum())
    config = GenerationConfig(max_new_tokens=4)
    last = n_prompt + 4 - 2  # the last token fed to the model; the final new one never is
    generate_with(
        gemma, PROMPT, [VectorIntervention(SITE, torch.ones(64), 1.0, Positions((last,)))], config
    )
    for where in (Positions((last + 1,)), Positions((9999,)), Positions((1,), prompt=False)):
        with pytest.raises(SaescopeError, match="never"):
            generate_with(
                gemma, PROMPT, [VectorIntervention(SITE, torch.ones(64), 1.0, where)], config
            )


def test_two_generations_in_one_block_raise_instead_of_miscounting(gemma) -> None:
    ids = gemma.tokenizer([PROMPT], return_tensors="pt")["input_ids"]
    steer = [VectorIntervention(SITE, torch.ones(64), 1.0, GENERATED)]
    with intervene(gemma, steer, prompt_lengths=torch.tensor([ids.shape[1]])):
        gemma.hf.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
        with pytest.raises(SaescopeError, match="lost track of token positions"):
            gemma.hf.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
