"""A sweep trains SAEs that start independently of each other and reproducibly."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from saescope import cli
from saescope.activations import capture
from saescope.data import ContextConfig
from saescope.sae import load_sae
from saescope.train import sae_seed


@pytest.fixture
def cache(model, corpus, tmp_path):
    capture(model, ["layers.1.resid_post"], tmp_path / "cache", tokens=1024, corpus=corpus,
            context=ContextConfig(context_size=32, seed=0), dtype="float32", batch_size=4,
            shard_rows=256, progress=False)  # fmt: skip
    return tmp_path / "cache"


def _sweep(cache, out) -> None:
    argv = ["train", "--acts", str(cache), "--out", str(out), "--width", "64,256", "--k", "4",
            "--batch-size", "128", "--holdout", "0", "--encoder-dtype", "float32"]  # fmt: skip
    assert cli.main(argv) == 0


def same_index_fraction(narrow: torch.Tensor, wide: torch.Tensor) -> float:
    """Fraction of narrow decoder rows whose best cosine match in ``wide`` has the same index."""
    cos = F.normalize(narrow, dim=1) @ F.normalize(wide, dim=1).t()  # (n, w)
    return float((cos.argmax(1) == torch.arange(len(narrow))).float().mean())


def test_widths_of_one_sweep_start_independently_and_rerun_identically(cache, tmp_path) -> None:
    _sweep(cache, tmp_path / "a")
    narrow = load_sae(tmp_path / "a" / "topk-w64-k4").W_dec.detach()
    wide = load_sae(tmp_path / "a" / "topk-w256-k4").W_dec.detach()
    # One seed for both made the narrow rows the wide one's first: a fraction near 1. Chance
    # is 1/256 per row.
    assert same_index_fraction(narrow, wide) < 0.10
    _sweep(cache, tmp_path / "b")
    for name in ("topk-w64-k4", "topk-w256-k4"):
        first = load_file(tmp_path / "a" / name / "sae_weights.safetensors")
        second = load_file(tmp_path / "b" / name / "sae_weights.safetensors")
        assert first.keys() == second.keys()
        assert all(torch.equal(first[key], second[key]) for key in first)


def test_an_sae_seed_depends_on_the_run_seed_and_the_name_only() -> None:
    assert sae_seed(0, "topk-w64-k4") == sae_seed(0, "topk-w64-k4")
    seeds = {sae_seed(s, n) for s in (0, 1) for n in ("topk-w64-k4", "topk-w256-k4")}
    assert len(seeds) == 4 and all(0 <= s < 2**63 for s in seeds)
