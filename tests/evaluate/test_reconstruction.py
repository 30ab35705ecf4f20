import pytest
import torch

from saescope.evaluate import reconstruction_stats
from saescope.sae import SAEConfig, build_sae


def test_metrics_equal_naive_computations() -> None:
    sae = build_sae(SAEConfig(d_in=16, d_sae=64, architecture="topk", k=4), seed=0).eval()
    x = torch.randn(300, 16) * 3 + 1
    stats = reconstruction_stats(sae, x.split(64))
    hat = sae(x).x_hat.detach()
    err = (x - hat).pow(2).sum()
    assert stats.fvu == pytest.approx(float(err / (x - x.mean(0)).pow(2).sum()), rel=1e-5)
    assert stats.mse == pytest.approx(float(err / 300), rel=1e-5)
    cos = torch.nn.functional.cosine_similarity(x, hat, dim=-1).mean()
    assert stats.cosine == pytest.approx(float(cos), rel=1e-5)
    assert stats.l2_ratio == pytest.approx(
        float((hat.norm(dim=-1) / x.norm(dim=-1)).mean()), rel=1e-5
    )
    bias = hat.pow(2).sum() / (hat * x).sum()
    assert stats.relative_reconstruction_bias == pytest.approx(float(bias), rel=1e-5)
    dense = sae.encode_dense(x)
    fired = (dense > 0).sum(0)
    assert torch.equal(stats.firing_counts, fired)
    assert stats.l0 == pytest.approx(float((dense > 0).sum(-1).double().mean()))
    assert stats.dead_fraction == pytest.approx(float((fired == 0).double().mean()))
    assert stats.dense_fraction == pytest.approx(float((fired / 300 > 0.1).double().mean()))
    assert int((stats.l0_counts * torch.arange(len(stats.l0_counts))).sum()) == int(fired.sum())
    assert len(stats.activations) == int(fired.sum())
