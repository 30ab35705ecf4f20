import pytest
from tiny_models import tiny_model

from saescope.sae import SAEConfig, SAEMetadata, build_sae

SITE = "layers.1.resid_post"


@pytest.fixture
def gemma(tokenizer):
    """Tiny Gemma 3 (sliding-window attention, soft-capping: the default model's family)."""
    return tiny_model("gemma3", tokenizer)


@pytest.fixture
def sae():
    cfg = SAEConfig(
        d_in=64, d_sae=128, architecture="topk", k=8, metadata=SAEMetadata(hook_name=SITE)
    )
    return build_sae(cfg, seed=1).eval()
