"""The one row extractor against the naive loop, and the context-length bound on every live path."""

import pytest
import torch

from saescope.activations import stream_activations
from saescope.activations.extract import site_rows
from saescope.data import ContextConfig, pack_contexts
from saescope.errors import SaescopeError
from saescope.evaluate.run import evaluate_saes
from saescope.interpret.batches import live_batches
from saescope.interpret.neurons import top_contexts
from saescope.models import run_with_cache

SITES = ["layers.0.mlp_act", "layers.1.resid_post"]
SPECIAL = {0, 1, 2, 3}  # the tiny tokenizer's pad, eos, bos, unk


@pytest.mark.parametrize("exclude", [True, False])
def test_site_rows_are_the_naive_loop_over_kept_positions(model, corpus, exclude) -> None:
    ids = torch.stack(list(pack_contexts(corpus, model.tokenizer, ContextConfig(16)))[:5])
    ids[1, 7] = 1  # an EOS mid-context
    full = run_with_cache(model, ids, SITES)  # each (B, T, d)
    want: dict[str, list[torch.Tensor]] = {s: [] for s in SITES}
    where = []
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            if exclude and int(ids[b, t]) in SPECIAL:
                continue
            where.append((b, t, int(ids[b, t])))
            for s in SITES:
                want[s].append(full[s][b, t])
    rows = site_rows(model, ids, SITES, exclude, dtype=torch.bfloat16, device="cpu")
    assert [(int(c), int(p), int(k)) for c, p, k in zip(*rows[1:4], strict=True)] == where
    for s in SITES:
        assert rows.acts[s].dtype == torch.bfloat16
        assert torch.equal(rows.acts[s], torch.stack(want[s]).to(torch.bfloat16))
    assert int(rows.keep.sum()) == len(where)
    assert (len(where) < ids.numel()) == exclude  # BOS and the EOS dropped, or everything kept


def test_every_live_path_refuses_contexts_longer_than_the_model(model, corpus, tmp_path) -> None:
    too_long = ContextConfig(300)  # the tiny models have 256 positions
    message = r"context size 300 exceeds the 256 positions tiny-llama supports.*--context-size"
    with pytest.raises(SaescopeError, match=message):
        site_rows(model, torch.zeros(1, 300, dtype=torch.long), SITES)
    with pytest.raises(SaescopeError, match=message):
        next(stream_activations(model, SITES[1], 8, corpus, too_long, buffer_rows=16))
    with pytest.raises(SaescopeError, match=message):
        next(live_batches(model, SITES[1], corpus, too_long))
    with pytest.raises(SaescopeError, match=message):
        top_contexts(model, SITES[1], [0], corpus, 600, context=too_long, progress=False)
    with pytest.raises(SaescopeError, match=message):
        evaluate_saes([], tmp_path / "report", model=model, corpus=corpus, context=too_long)
