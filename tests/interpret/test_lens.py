import pytest
import torch
from tiny_models import tiny_model

from saescope.errors import SaescopeError
from saescope.interpret import logit_lens, predict


@pytest.mark.parametrize("family", ["gemma2", "gemma3", "llama", "gpt2", "gpt_neox"])
def test_last_stage_of_the_lens_is_the_models_own_distribution(family, tokenizer) -> None:
    model = tiny_model(family, tokenizer)
    prompt = "The reliability of Wikipedia is very"
    lens = logit_lens(model, prompt)
    assert lens.stages[0] == "embed" and lens.stages[-1] == "layers.2.mlp"
    assert lens.probs.shape == (1 + 2 * 3, 300)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    own = model.hf(ids).logits[0, -1].softmax(-1)
    torch.testing.assert_close(lens.probs[-1], own, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(predict(model, prompt).probs, own, rtol=1e-4, atol=1e-6)
    if family == "gemma2":  # soft-capped logits: the cap must have been applied
        assert model.hf.config.final_logit_softcapping


def test_tracked_tokens_ranks_and_positions(tokenizer) -> None:
    model = tiny_model("llama", tokenizer)
    lens = logit_lens(model, "Bridges span rivers", position=1)
    top = lens.top(3)
    assert len(top) == len(lens.stages) and all(len(t) == 3 for t in top)
    best = int(lens.probs[-1].argmax())
    probs, ranks = lens.track([best, 5])
    assert ranks[-1, 0] == 0 and ranks.shape == (len(lens.stages), 2)
    torch.testing.assert_close(probs[:, 0], lens.probs[:, best])
    with pytest.raises(SaescopeError, match="outside the prompt"):
        logit_lens(model, "hi", position=40)


def test_the_lens_heatmap_leaves_the_warning_filters_alone(tokenizer, tmp_path) -> None:
    import warnings

    from saescope.interpret.plots import plot_logit_lens

    lens = logit_lens(tiny_model("llama", tokenizer), "Bridges span")
    before = list(warnings.filters)
    assert plot_logit_lens(lens, tmp_path / "lens.png", k=3).stat().st_size > 0
    assert warnings.filters == before
