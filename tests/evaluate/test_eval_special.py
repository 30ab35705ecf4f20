"""Evaluation counts the positions the SAE was trained on, in its rows and its spliced loss."""

import json
from dataclasses import replace

import pytest
import torch
from tiny_models import save_tiny_model

from saescope import cli
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"
CONTEXTS, T = 4, 16


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-gpt2")
    save_tiny_model(path, "gpt2")
    return path


def _sae(tmp_path, exclude: bool):
    cfg = SAEConfig(
        d_in=64,
        d_sae=32,
        architecture="relu",
        metadata=SAEMetadata(site=SITE, hook_name="blocks.1.hook_resid_post"),
    )
    cfg = replace(cfg, metadata=replace(cfg.metadata, exclude_special_tokens=exclude))
    torch.manual_seed(0)
    path = tmp_path / f"sae-exclude-{exclude}"
    save_sae(build_sae(cfg), path)
    return str(path)


def _eval(model_dir, out, *argv: str) -> dict:
    args = ["eval", "--model", str(model_dir), "--dtype", "fp32", "--context-size", str(T)]
    args += ["--loss-tokens", str(CONTEXTS * T), "--no-ablations", "--out", str(out), *argv]
    assert cli.main(args) == 0
    saes = json.loads((out / "metrics.json").read_text())["saes"]
    return {
        name: (s["reconstruction"]["tokens"], s["spliced"]["tokens"]) for name, s in saes.items()
    }


def test_live_eval_follows_each_saes_metadata_and_keep_special_overrides(model_dir, tmp_path):
    keeps, drops = _sae(tmp_path, exclude=False), _sae(tmp_path, exclude=True)
    every_row, every_pair = CONTEXTS * T, CONTEXTS * (T - 1)
    got = _eval(model_dir, tmp_path / "r", "--sae", keeps, drops)
    # trained with special tokens: BOS is a reconstruction row and is edited in the splice
    # (every next-token pair then counts); trained without: both leave BOS out alike
    assert got["sae-exclude-False"] == (every_row, every_pair)
    rows, pairs = got["sae-exclude-True"]
    assert rows < every_row and pairs < every_pair
    assert every_row - rows == CONTEXTS  # one BOS per context, nothing else special here
    forced = _eval(model_dir, tmp_path / "k", "--sae", drops, "--keep-special")
    assert forced["sae-exclude-True"] == (every_row, every_pair)


def test_keep_special_with_a_cache_that_excludes_them_is_refused(model_dir, tmp_path, caplog):
    acts = tmp_path / "acts"
    capture = ["capture", "--model", str(model_dir), "--site", SITE, "--tokens", "64"]
    assert cli.main([*capture, "--context-size", str(T), "--out", str(acts)]) == 0
    argv = ["eval", "--sae", _sae(tmp_path, False), "--acts", str(acts), "--keep-special"]
    assert cli.main([*argv, "--out", str(tmp_path / "r")]) == 2
    assert "excludes special-token positions" in caplog.text
