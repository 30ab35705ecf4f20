import pytest
import torch
from tiny_models import tiny_model

from saescope.errors import SaescopeError
from saescope.interpret import logit_lens, predict
from saescope.models import LanguageModel, run_with_cache
from saescope.models.forward import final_norm, unembed


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
    assert ranks[-1, 0] == 1 and ranks.shape == (len(lens.stages), 2)  # 1-based
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


def _bf16_model_whose_logits_tie(tokenizer, prompt: str) -> LanguageModel:
    """A tiny llama in bf16 whose unembedding gives every token the same large logit plus a
    distinct small one: 300 distinct values in float32, a handful once rounded to bf16."""
    model = tiny_model("llama", tokenizer)
    model = LanguageModel.wrap(model.hf.to(torch.bfloat16), tokenizer, name="tiny-llama-bf16")
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    last = run_with_cache(model, ids, ["layers.2.resid_post"])["layers.2.resid_post"][0, -1]
    normed = final_norm(model)(last).float()  # (d,)
    big, small = normed.abs().topk(2).indices.tolist()
    weight = torch.zeros_like(model.hf.lm_head.weight, dtype=torch.float32)  # (vocab, d)
    weight[:, big] = 256 / float(normed[big])  # logit ~256 for all: bf16 steps of 2 there
    weight[:, small] = (torch.arange(300) - 150) / 128  # exact in bf16: 8 significant bits
    model.hf.lm_head.weight.copy_(weight)
    return model


def test_ranks_are_1_based_and_tie_free_in_bf16(tokenizer) -> None:
    prompt = "Bridges span rivers"
    model = _bf16_model_whose_logits_tie(tokenizer, prompt)
    lens = logit_lens(model, prompt)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    last = run_with_cache(model, ids, ["layers.2.resid_post"])["layers.2.resid_post"][0, -1]
    assert len(unembed(model, last).unique()) < 20  # the case: bf16 logits tie
    assert lens.logits.dtype == torch.float32 and len(lens.logits[-1].unique()) == 300
    _, ranks = lens.track(list(range(300)))
    assert sorted(ranks[-1].tolist()) == list(range(1, 301))  # a permutation of 1..300
    assert ranks[-1, int(lens.logits[-1].argmax())] == 1
    assert lens.top(1)[-1][0][0] == tokenizer.decode([int(lens.logits[-1].argmax())])


def test_tracked_targets_are_plotted_per_stage(tokenizer, tmp_path) -> None:
    from saescope._plotting import pyplot
    from saescope.interpret.plots import logit_lens_figure, plot_logit_lens

    lens = logit_lens(tiny_model("llama", tokenizer), "Bridges span")
    targets = {" rivers": 5, "中文": 7}  # a CJK label must draw (or fall back) without raising
    fig = logit_lens_figure(lens, 3, targets)
    _heatmap, p_ax, rank_ax = fig.axes[:3]
    probs, ranks = lens.track([5, 7])
    for ax, values in ((p_ax, probs), (rank_ax, ranks)):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["' rivers'", "'中文'"]
        for j, line in enumerate(lines):
            assert list(line.get_xdata()) == values[:, j].tolist()
            assert list(line.get_ydata()) == list(range(len(lens.stages)))
    assert min(ranks.min(), 1) == 1 and rank_ax.get_xscale() == "log"
    pyplot().close(fig)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no glyph warning may escape
        path = plot_logit_lens(lens, tmp_path / "lens.png", k=3, targets=targets)
    assert path.stat().st_size > 1000


@pytest.fixture
def no_cjk_font(monkeypatch):
    from saescope import _plotting

    monkeypatch.setattr(_plotting, "CJK_FONTS", ("No Such CJK Font",))
    _plotting.fallback_fonts.cache_clear()
    yield
    _plotting.fallback_fonts.cache_clear()


def test_without_a_cjk_font_the_plot_is_written_and_one_warning_logged(
    no_cjk_font, tokenizer, tmp_path, caplog
) -> None:
    from saescope.interpret.plots import plot_logit_lens

    lens = logit_lens(tiny_model("llama", tokenizer), "Bridges span")
    for name in ("a.png", "b.png"):
        assert plot_logit_lens(lens, tmp_path / name, k=2, targets={"日本語": 5}).stat().st_size
    assert sum("no CJK font found" in r.getMessage() for r in caplog.records) == 1


def test_lens_command_plots_the_targets(tmp_path, capsys) -> None:
    from tiny_models import save_tiny_model

    from saescope import cli

    save_tiny_model(tmp_path / "m", "llama")
    plot = tmp_path / "lens.png"
    argv = ["lens", "--model", str(tmp_path / "m"), "--prompt", "Bridges span", "--top", "3"]
    assert cli.main([*argv, "--targets", " span, s", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "' span' p / rank" in out and plot.stat().st_size > 1000


@pytest.mark.parametrize("family", ["gemma3", "gpt2"])
def test_a_bf16_lens_reads_in_float32_close_to_the_float32_lens(family, tokenizer) -> None:
    model = tiny_model(family, tokenizer)
    exact = logit_lens(model, "Bridges span rivers")
    low = logit_lens(
        LanguageModel.wrap(model.hf.to(torch.bfloat16), tokenizer, name="bf16"),
        "Bridges span rivers",
    )
    assert low.logits.dtype == torch.float32 and next(model.hf.parameters()).dtype == torch.bfloat16
    torch.testing.assert_close(low.probs, exact.probs, atol=0.02, rtol=0.1)
