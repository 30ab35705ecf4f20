"""SAEs saved by saescope load in SAELens v6 and encode/decode identically.

Runs where sae-lens is installed (e.g. the peers venv of ../shared/bench/setup-peers.sh:
``PYTHONPATH=src .peers-venv/bin/python -m pytest tests/sae/test_saelens_compat.py``); skips elsewhere.
"""

import pytest
import torch

from saescope.sae import ARCHITECTURES, SAEConfig, SAEMetadata, build_sae, save_sae

sae_lens = pytest.importorskip("sae_lens")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_saelens_loads_and_encodes_identically(arch: str, tmp_path) -> None:
    k = 8 if ARCHITECTURES[arch].needs_k else None
    meta = SAEMetadata(
        model_name="gemma-3-270m",
        hook_name="blocks.6.hook_resid_post",
        site="layers.6.resid_post",
        context_size=128,
        dataset_path="default",
    )
    sae = build_sae(SAEConfig(d_in=32, d_sae=128, architecture=arch, k=k, metadata=meta), seed=0)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.0, 0.3) if name == "threshold" else p.normal_(0, 0.2)
        if arch in ("batchtopk", "matryoshka"):  # a buffer, not a parameter
            sae.threshold.fill_(0.2)
    sae.eval()
    save_sae(sae, tmp_path / "s")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "s"))
    assert theirs.cfg.metadata.hook_name == "blocks.6.hook_resid_post"
    x = torch.randn(64, 32)
    with torch.no_grad():
        ours_z = sae.encode_dense(x)
        their_z = theirs.encode(x)
        torch.testing.assert_close(their_z, ours_z, rtol=1e-5, atol=1e-5)
        assert (ours_z > 0).sum() > 0
        torch.testing.assert_close(theirs.decode(their_z), sae(x).x_hat, rtol=1e-4, atol=1e-4)
