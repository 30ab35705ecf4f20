"""The ITO frontier and ``--encoder`` on the real command line, on a tiny model's cache."""

import json
from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny_model

from saescope import cli
from saescope.evaluate import ito
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ito")
    save_tiny_model(root / "model", "gpt2")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"Bridge number {i} spans a river." for i in range(100)))
    argv = ["capture", "--model", str(root / "model"), "--dtype", "fp32", "--site", SITE]
    argv += ["--tokens", "256", "--out", str(root / "cache"), "--dataset", str(corpus)]
    argv += ["--context-size", "32", "--batch-size", "2", "--shard-rows", "64"]
    assert cli.main(argv) == 0
    for k in (4, 8):
        cfg = SAEConfig(d_in=64, d_sae=128, architecture="topk", k=k,
                        metadata=SAEMetadata(site=SITE))  # fmt: skip
        save_sae(build_sae(cfg, seed=k).eval(), root / f"k{k}")
    return root


def test_ito_frontier_writes_table_json_and_plots(setup: Path, tmp_path: Path) -> None:
    out = tmp_path / "frontier"
    argv = ["ito-frontier", "--sae", str(setup / "k4"), str(setup / "k8"), "--acts",
            str(setup / "cache"), "--model", str(setup / "model"), "--dtype", "fp32",
            "--l0", "2,4", "--tokens", "128", "--loss-tokens", "64", "--context-size", "32",
            "--dataset", str(setup / "corpus.txt"), "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    points = ito.load_json(out / "frontier.json")
    coders = {(p.dictionary, p.coder, p.target_l0) for p in points}
    assert ("k4", "encoder", None) in coders and ("random", "gp", 4) in coders
    assert ("k8", "topk", 2) in coders and ("random", "topk", 2) not in coders
    assert all(p.l0 <= (p.target_l0 or 8) + 1e-6 and p.loss_recovered is not None for p in points)
    by = {(p.dictionary, p.coder, p.target_l0): p for p in points}
    # ITO at the encoder's own L0 reconstructs at least as well as the (random) encoder does
    assert by["k4", "gp", 4].fvu <= by["k4", "encoder", None].fvu
    for name in ("frontier.png", "scatter.png", "frontier.md"):
        assert (out / name).stat().st_size > 0
    info = json.loads((out / "frontier.json").read_text())["info"]
    assert 0 <= info["agreement"]["strong_both"] <= 1 and info["scatter"]["coder"] == "gp:k=4"


def test_eval_with_an_encoder_spec_scores_the_pursuits_codes(setup: Path, tmp_path: Path) -> None:
    out = {}
    for spec in (None, "gp:k=2"):
        report = tmp_path / str(spec).replace(":", "_")
        argv = ["eval", "--sae", str(setup / "k8"), "--acts", str(setup / "cache"), "--out",
                str(report), "--tokens", "128"]  # fmt: skip
        assert cli.main(argv + (["--encoder", spec] if spec else [])) == 0
        out[spec] = json.loads((report / "metrics.json").read_text())["saes"]["k8"]
    assert out[None]["reconstruction"]["l0"] == pytest.approx(8)
    assert out["gp:k=2"]["reconstruction"]["l0"] <= 2


def test_a_bad_encoder_spec_is_one_line_and_exit_2(setup: Path, tmp_path: Path, caplog) -> None:
    argv = ["eval", "--sae", str(setup / "k8"), "--acts", str(setup / "cache"), "--out",
            str(tmp_path / "r"), "--encoder", "lasso:k=3"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "expected gp:k=32" in caplog.text


def test_frontier_refuses_bad_l0s() -> None:
    sae = build_sae(SAEConfig(d_in=8, d_sae=16, architecture="topk", k=2), seed=0)
    with pytest.raises(Exception, match="positive integers"):
        ito.frontier({"a": sae}, [torch.randn(4, 8)], [0, 2])
