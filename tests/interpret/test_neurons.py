import pytest
import torch

from saescope.data import ContextConfig, keep_positions, pack_contexts
from saescope.errors import SaescopeError
from saescope.interpret.neurons import top_contexts, top_neurons
from saescope.interpret.pictures import from_grid, grid_shape, to_grid
from saescope.interpret.topk import StreamingTopK
from saescope.models import run_with_cache
from saescope.steer import clamp_neurons


def test_streaming_topk_equals_brute_force() -> None:
    acts = torch.randn(1000, 7)
    top = StreamingTopK(7, 5)
    for start in range(0, 1000, 64):
        top.update(acts[start : start + 64], torch.arange(start, min(start + 64, 1000)))
    values, rows = acts.topk(5, dim=0)
    torch.testing.assert_close(top.values, values.t())
    assert torch.equal(top.ids, rows.t())


def test_top_contexts_match_a_brute_force_scan(model, corpus) -> None:
    ctx = ContextConfig(context_size=16)
    found = top_contexts(
        model,
        "layers.1.mlp_act",
        [3, 40],
        corpus,
        tokens=10_000,
        k=4,
        context=ctx,
        batch_size=8,
        progress=False,
    )
    ids = torch.stack(list(pack_contexts(corpus, model.tokenizer, ctx)))
    acts = run_with_cache(model, ids, ["layers.1.mlp_act"])["layers.1.mlp_act"].clone()
    acts[~keep_positions(ids, model.tokenizer)] = float("-inf")
    for unit in (3, 40):
        want = acts[..., unit].reshape(-1).topk(4).values
        got = torch.tensor([e.activation for e in found[unit]])
        torch.testing.assert_close(got, want)
        best = found[unit][0]
        assert best.activations[best.focus] == pytest.approx(best.activation, rel=1e-5)
        assert "".join(best.tokens)


def test_clamping_a_neuron_changes_only_that_neuron(model) -> None:
    ids = torch.randint(4, 300, (2, 9))
    clean = run_with_cache(model, ids, ["layers.1.mlp_act"])["layers.1.mlp_act"]
    clean_logits = model.hf(ids).logits
    with clamp_neurons(model, "layers.1.mlp_act", {5: 7.0}, positions=[3]):
        clamped = run_with_cache(model, ids, ["layers.1.mlp_act", "layers.1.resid_post"])
        out = model.hf(ids).logits
    changed = (clamped["layers.1.mlp_act"] != clean).nonzero().tolist()
    assert {(b, t, u) for b, t, u in changed} <= {(0, 3, 5), (1, 3, 5)}
    assert (clamped["layers.1.mlp_act"][:, 3, 5] == 7.0).all()
    assert not torch.allclose(out, clean_logits)  # the clamp reaches the output
    torch.testing.assert_close(model.hf(ids).logits, clean_logits, rtol=0, atol=0)  # and is gone
    with (
        pytest.raises(SaescopeError, match="has 96 units"),
        clamp_neurons(model, "layers.1.mlp_act", {96: 1.0}),
    ):
        pass
    assert len(top_neurons(model, "Bridges span rivers", "layers.1.mlp_act", k=3)) == 3


@pytest.mark.parametrize(
    ("n", "shape"), [(640, (20, 32)), (2304, (48, 48)), (16384, (128, 128)), (97, (10, 10))]
)
def test_pictures_round_trip(n, shape) -> None:
    assert grid_shape(n) == shape
    vector = torch.randn(n)
    grid = to_grid(vector)
    assert grid.shape == shape
    torch.testing.assert_close(from_grid(grid, n), vector)


def test_residual_vectors_equal_hidden_states(model, tokenizer) -> None:
    from saescope.interpret.pictures import residual_vectors

    vectors = residual_vectors(model, "Bridges span rivers", layers=[0, 1])
    ids = tokenizer("Bridges span rivers", return_tensors="pt")["input_ids"]
    hidden = model.hf(ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(vectors["embed"], hidden[0][0, -1])
    torch.testing.assert_close(vectors["layers.1"], hidden[2][0, -1])


def test_neurons_rank_by_output_contribution_negative_ones_included(model) -> None:
    """A neuron with a small |activation| but large output weights outranks one with a larger
    |activation| and tiny weights; negative activations rank by their size."""
    site, prompt = "layers.1.mlp_act", "Bridges span rivers"
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    acts = run_with_cache(model, ids, [site])[site][0, -1].float()  # (96,)
    order = acts.abs().sort(descending=True).indices
    loud, quiet = int(order[0]), int(order[10])  # the largest |activation|, the 11th
    assert acts[order[:5]].min() < 0  # SiLU-gated neurons go below zero, and loudly
    down = model.layers[1].mlp.down_proj.weight  # (d_model, d_mlp): column u is neuron u's output
    down[:, loud] *= 1e-3
    down[:, quiet] *= 1e3
    by_contribution = top_neurons(model, prompt, site, k=96)
    assert by_contribution[0].unit == quiet
    assert loud not in [u.unit for u in by_contribution[:10]]
    norms = down.detach().norm(dim=0)
    want = (acts.abs() * norms).sort(descending=True).indices.tolist()
    assert [u.unit for u in by_contribution] == want
    for u in by_contribution[:5]:
        assert u.contribution == pytest.approx(abs(u.activation) * float(norms[u.unit]), rel=1e-5)
    by_activation = top_neurons(model, prompt, site, k=5, rank="activation")
    assert [u.unit for u in by_activation] == order[:5].tolist()
    assert min(u.activation for u in by_activation) < 0  # negative ones listed, signed
    with pytest.raises(SaescopeError, match="rank must be one of"):
        top_neurons(model, prompt, site, rank="value")


def test_output_norms_read_gpt2_conv1d_the_right_way_round(tokenizer) -> None:
    from tiny_models import tiny_model

    from saescope.interpret.neurons import output_norms

    gpt2 = tiny_model("gpt2", tokenizer)
    c_proj = gpt2.layers[1].mlp.c_proj.weight  # Conv1D: (in = d_mlp 96, out = d_model 64)
    torch.testing.assert_close(output_norms(gpt2, "layers.1.mlp_act"), c_proj.norm(dim=1))
    assert torch.equal(output_norms(gpt2, "layers.1.resid_post"), torch.ones(64))
