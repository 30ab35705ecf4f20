from pathlib import Path

import torch
from tiny_models import torchrun

from saescope.activations import open_activations
from saescope.data import ContextConfig, keep_positions, pack_contexts
from saescope.models import run_with_cache


def test_torchrun_ranks_capture_their_shares_into_one_cache(model, corpus, tmp_path) -> None:
    script = Path(__file__).with_name("distributed_capture.py")
    torchrun(str(script), str(tmp_path / "c"))
    cache = open_activations(tmp_path / "c")
    assert len(cache) == 301 and cache.manifest.world_size == 2
    assert {s.rank for s in cache.manifest.shards} == {0, 1}
    prov = cache.provenance(torch.arange(len(cache)))
    rank_of_row = torch.cat([torch.full((s.rows,), s.rank) for s in cache.manifest.shards])
    assert torch.equal(prov["context"] % 2, rank_of_row)  # rank r took contexts r, r+2, ...
    contexts = torch.stack(list(pack_contexts(corpus, model.tokenizer, ContextConfig(16))))
    expected = run_with_cache(model, contexts, ["layers.1.resid_post"])["layers.1.resid_post"]
    got = cache.rows(torch.arange(len(cache)))
    want = expected[prov["context"], prov["position"].long()]
    torch.testing.assert_close(got, want)
    assert keep_positions(contexts, model.tokenizer)[prov["context"], prov["position"].long()].all()
