import pytest
import torch
from tiny_models import TINY_CONFIGS, VOCAB, tiny_model

from saescope.errors import SaescopeError
from saescope.models import SITE_KINDS, capture_sites, edit_sites, run_with_cache

ALL_SITES = [f"layers.{i}.{k}" for i in range(3) for k in SITE_KINDS]


def _ids(batch: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(4, VOCAB, (batch, length))


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.hf.modules())


@pytest.mark.parametrize("family", TINY_CONFIGS)
def test_sites_match_hidden_states_and_add_up(family: str) -> None:
    model = tiny_model(family)
    ids = _ids()
    hidden = model.hf(ids, output_hidden_states=True).hidden_states
    hooks_before = _hook_count(model)  # transformers keeps recorder hooks of its own
    acts = run_with_cache(model, ids, ALL_SITES)
    for i in range(3):
        torch.testing.assert_close(acts[f"layers.{i}.resid_pre"], hidden[i], rtol=0, atol=0)
        if i < 2:  # the last entry of hidden_states has the final norm applied
            torch.testing.assert_close(
                acts[f"layers.{i}.resid_post"], hidden[i + 1], rtol=0, atol=0
            )
        total = (
            acts[f"layers.{i}.resid_pre"]
            + acts[f"layers.{i}.attn_out"]
            + acts[f"layers.{i}.mlp_out"]
        )
        torch.testing.assert_close(total, acts[f"layers.{i}.resid_post"])
        assert acts[f"layers.{i}.mlp_act"].shape == (2, 12, model.site_dim(f"layers.{i}.mlp_act"))
    assert model.site_dim("layers.0.mlp_act") == 96
    assert model.site_dim("layers.0.resid_post") == 64
    assert _hook_count(model) == hooks_before


def test_transformerlens_spelling_captures_the_same_tensor() -> None:
    model = tiny_model("gpt2")
    ids = _ids()
    ours = run_with_cache(model, ids, ["layers.1.mlp_act"])["layers.1.mlp_act"]
    theirs = run_with_cache(model, ids, ["blocks.1.mlp.hook_post"])["layers.1.mlp_act"]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_capture_stops_after_the_deepest_site() -> None:
    model = tiny_model("llama")
    calls: list[int] = []
    handles = [
        layer.register_forward_hook(lambda *_, i=i: calls.append(i))
        for i, layer in enumerate(model.layers)
    ]
    head = model.hf.lm_head.register_forward_hook(lambda *_: calls.append(-1))
    try:
        run_with_cache(model, _ids(), ["layers.0.mlp_out", "layers.1.resid_post"])
    finally:
        for h in [*handles, head]:
            h.remove()
    assert calls == [0, 1]


def test_hooks_are_removed_after_an_exception() -> None:
    model = tiny_model("gemma3")
    hooks_before = _hook_count(model)

    def explode(x: torch.Tensor) -> None:
        raise RuntimeError("boom")

    with (
        pytest.raises(RuntimeError, match="boom"),
        edit_sites(model, {"layers.1.mlp_act": explode}),
    ):
        model.hf(_ids())
    with pytest.raises(KeyError), capture_sites(model, ["layers.0.resid_post"]):
        raise KeyError("user code failed")
    assert _hook_count(model) == hooks_before


def test_edits_replace_the_value_and_identity_edits_change_nothing() -> None:
    model = tiny_model("qwen3")
    ids = _ids()
    clean = model.hf(ids).logits
    with edit_sites(
        model, {"layers.1.resid_pre": lambda x: x.clone(), "layers.0.mlp_act": lambda x: None}
    ):
        same = model.hf(ids).logits
    torch.testing.assert_close(same, clean, rtol=0, atol=0)
    with edit_sites(model, {"layers.1.mlp_act": torch.zeros_like}):
        ablated = model.hf(ids).logits
        inner = run_with_cache(model, ids, ["layers.1.mlp_out"])["layers.1.mlp_out"]
    assert not torch.allclose(ablated, clean)
    assert inner.abs().max() == 0  # no biases in qwen3's MLP: zero neurons -> zero output


def test_several_functions_on_one_site_compose_in_order() -> None:
    model = tiny_model("llama")
    ids = _ids()
    seen: list[torch.Tensor] = []
    with edit_sites(
        model,
        [
            ("layers.0.resid_post", lambda x: x * 2),
            ("layers.0.resid_post", lambda x: seen.append(x)),
        ],
    ):
        model.hf(ids)
    reference = run_with_cache(model, ids, ["layers.0.resid_post"])["layers.0.resid_post"]
    torch.testing.assert_close(seen[0], reference * 2)


def test_a_stopped_forward_returns_none_and_the_rest_of_the_block_runs() -> None:
    model = tiny_model("llama")
    ids = _ids()
    hooks_before = _hook_count(model)
    reached: list[int] = []
    head = model.hf.lm_head.register_forward_hook(lambda *_: reached.append(-1))
    try:
        with capture_sites(model, ["layers.1.resid_post"], stop=True) as store:
            out = model.hf(input_ids=ids, use_cache=False)
            reached.append(1)  # a statement after the forward, inside the block
    finally:
        head.remove()
    assert out is None
    assert reached == [1]  # the head never ran; the block ran to its end
    reference = run_with_cache(model, ids, ["layers.1.resid_post"])["layers.1.resid_post"]
    torch.testing.assert_close(store["layers.1.resid_post"], reference, rtol=0, atol=0)
    assert "forward" not in vars(model.hf)  # the class's forward is back
    assert model.hf(input_ids=ids, use_cache=False).logits.shape == (2, 12, VOCAB)
    assert _hook_count(model) == hooks_before


def test_a_stop_that_cannot_return_early_is_an_error_not_a_skipped_block() -> None:
    model = tiny_model("llama")
    hooks_before = _hook_count(model)
    after: list[bool] = []
    with (
        pytest.raises(SaescopeError, match=r"stop=True.*model\.hf\(\.\.\.\)"),
        capture_sites(model, ["layers.0.mlp_out"], stop=True),
    ):
        model.hf.model(input_ids=_ids())  # the inner model: no early return for it
        after.append(True)
    assert after == []
    assert "forward" not in vars(model.hf)
    assert _hook_count(model) == hooks_before


def test_capture_needs_a_site() -> None:
    with (
        pytest.raises(SaescopeError, match="at least one site"),
        capture_sites(tiny_model("gpt2"), []),
    ):
        pass
