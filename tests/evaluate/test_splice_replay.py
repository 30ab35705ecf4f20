"""The suffix replay under spliced-loss evaluation equals today's full edited forwards."""

import sys
from functools import partial
from pathlib import Path

import pytest
import torch
import transformers as tf

from saescope.data import ContextConfig, keep_positions, pack_contexts
from saescope.evaluate import spliced_stats
from saescope.evaluate.splice import _broadcast, _replace_kept, model_logits, reconstruct_with
from saescope.models import LanguageModel, edit_sites
from saescope.models.replay import Recording, record_prefix, replay_logits
from saescope.sae import SAEConfig, build_sae

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_models import _LLAMA_LIKE, TINY_CONFIGS, tiny_model

FAMILIES = [*TINY_CONFIGS, "gemma3_mixed"]
SITES = [
    "layers.0.resid_pre",
    "layers.1.resid_pre",
    "layers.1.attn_out",
    "layers.1.mlp_out",
    "layers.1.mlp_act",
    "layers.1.resid_post",
    "layers.2.resid_post",  # the last layer: only the head is re-run
]


def _model(family: str, tokenizer) -> LanguageModel:
    if family != "gemma3_mixed":
        return tiny_model(family, tokenizer)
    # The tiny Gemma 3 has only sliding-window layers; this one mixes in a global layer with its
    # own mask and rotary base, as the real one does, and soft-caps its logits as Gemma 2 does.
    cfg = tf.Gemma3TextConfig(
        head_dim=16,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        final_logit_softcapping=30.0,
        **_LLAMA_LIKE,
    )
    torch.manual_seed(0)
    hf = tf.AutoModelForCausalLM.from_config(cfg).eval()
    return LanguageModel.wrap(hf, tokenizer, name="tiny-gemma3-mixed")


def _batches(model: LanguageModel, corpus, n: int = 3):
    contexts = list(pack_contexts(corpus, model.tokenizer, ContextConfig(24)))[: 4 * n]
    keep = lambda ids: keep_positions(ids, model.tokenizer)  # noqa: E731
    return list(torch.stack(contexts).split(4)), keep


def _random_sae(d: int):
    torch.manual_seed(1)
    return build_sae(SAEConfig(d_in=d, d_sae=3 * d, architecture="relu")).eval()


@pytest.mark.parametrize("family", FAMILIES)
@torch.inference_mode()
def test_replayed_logits_equal_full_edited_forwards(family, tokenizer, corpus) -> None:
    model = _model(family, tokenizer)
    batches, keep = _batches(model, corpus, n=1)
    ids, kept = batches[0], keep(batches[0])
    for site in SITES:
        with record_prefix(model, model.site(site)) as recording:
            clean = model_logits(model, ids)
        prefix = recording.prefix()
        assert prefix is not None, f"{family} {site} fell back to full forwards"
        d = model.site_dim(site)
        variants = {
            "unedited": lambda x: None,
            "spliced": _replace_kept(kept, reconstruct_with(_random_sae(d))),
            "zero": _replace_kept(kept, torch.zeros_like),
            "mean": _replace_kept(kept, partial(_broadcast, torch.randn(d))),
        }
        for name, fn in variants.items():
            with edit_sites(model, [(site, fn)]):
                full = model_logits(model, ids)
            replayed = replay_logits(model, prefix, fn)
            # The same kernels on the same inputs: bit for bit, not merely close.
            torch.testing.assert_close(replayed, full, rtol=0, atol=0, msg=f"{site} {name}")
            if name == "unedited":
                torch.testing.assert_close(replayed, clean, rtol=0, atol=0)
            else:
                assert not torch.equal(replayed, clean), f"{name} at {site} changed nothing"


@pytest.mark.parametrize(
    ("family", "site"),
    [
        ("gemma3_mixed", "layers.1.attn_out"),
        ("gemma2", "layers.0.resid_pre"),
        ("llama", "layers.1.resid_post"),
        ("gpt2", "layers.1.mlp_act"),
        ("gpt_neox", "layers.2.resid_post"),
    ],
)
def test_spliced_stats_equal_the_full_forward_path(
    family, site, tokenizer, corpus, monkeypatch
) -> None:
    model = _model(family, tokenizer)
    batches, keep = _batches(model, corpus)
    sae = _random_sae(model.site_dim(site))
    fast = spliced_stats(model, sae, site, batches, keep)
    monkeypatch.setattr(Recording, "prefix", lambda self: None)  # today's full forwards
    slow = spliced_stats(model, sae, site, batches, keep)
    assert fast == slow
    assert fast.ce_spliced != fast.ce_clean  # the SAE is random: the splice must show


def test_one_full_forward_per_batch(tokenizer, corpus) -> None:
    model = _model("gemma3_mixed", tokenizer)
    batches, keep = _batches(model, corpus)
    calls = {"embed": 0, "layer0": 0, "layer2": 0}

    def count(name: str):
        def hook(*_) -> None:
            calls[name] += 1

        return hook

    handles = [
        model.hf.get_input_embeddings().register_forward_hook(count("embed")),
        model.layers[0].register_forward_hook(count("layer0")),
        model.layers[2].register_forward_hook(count("layer2")),
    ]
    try:
        spliced_stats(model, _random_sae(64), "layers.1.mlp_out", batches, keep)
    finally:
        for handle in handles:
            handle.remove()
    # clean once per batch; the spliced, zero and mean runs start at layer 1
    assert calls == {"embed": 3, "layer0": 3, "layer2": 12}, calls


def test_a_forward_the_recording_cannot_account_for_falls_back(tokenizer, corpus, caplog) -> None:
    model = _model("llama", tokenizer)
    batches, keep = _batches(model, corpus)
    sae = _random_sae(64)
    before = spliced_stats(model, sae, "layers.0.resid_post", batches, keep)
    # Layer 2 now receives something other than layer 1's output (here a hook rewrites it; in
    # another model it could be code between the layers, which a replay would not run). The
    # recorder cannot tell the two apart, so it refuses and the edited runs are full forwards.
    handle = model.layers[2].register_forward_pre_hook(lambda _m, args: (args[0] * 1.0, *args[1:]))
    try:
        with record_prefix(model, model.site("layers.0.resid_post")) as recording:
            model_logits(model, batches[0])
        assert recording.prefix() is None
        with caplog.at_level("WARNING"):
            after = spliced_stats(model, sae, "layers.0.resid_post", batches, keep)
    finally:
        handle.remove()
    assert "running full forwards" in caplog.text
    assert after == before
