"""Evaluation never reports NaN from bad input, and what it writes is strict JSON."""

import json
from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny_model

from saescope import cli
from saescope._files import strict_json
from saescope.errors import SaescopeError
from saescope.evaluate import evaluate, reconstruction_stats
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"


def fail(literal: str) -> None:
    raise AssertionError(f"not strict JSON: {literal} literal")


def strict_load(path: Path) -> object:
    return json.loads(path.read_text(), parse_constant=fail)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval-files")
    save_tiny_model(root / "model", "gpt2")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"Bridge number {i} spans a river." for i in range(100)))
    argv = ["capture", "--model", str(root / "model"), "--dtype", "fp32", "--site", SITE]
    argv += ["--tokens", "256", "--out", str(root / "cache"), "--dataset", str(corpus)]
    argv += ["--context-size", "32", "--batch-size", "2"]
    assert cli.main(argv) == 0
    return root / "cache"


def dead_sae(d_in: int = 64, d_sae: int = 128):
    """A ReLU SAE whose latents never fire and whose reconstruction is 0: log10 densities are
    -inf and the relative reconstruction bias is 0/0."""
    sae = build_sae(
        SAEConfig(d_in=d_in, d_sae=d_sae, architecture="relu", metadata=SAEMetadata(site=SITE)),
        seed=0,
    )
    with torch.no_grad():
        sae.b_enc.fill_(-1e4)
        sae.b_dec.zero_()
    return sae.eval()


def test_eval_writes_strict_json_with_null_for_undefined_values(cache: Path, tmp_path) -> None:
    save_sae(dead_sae(), tmp_path / "dead")
    out = tmp_path / "report"
    argv = ["eval", "--sae", str(tmp_path / "dead"), "--acts", str(cache), "--out", str(out)]
    assert cli.main(argv) == 0
    metrics = strict_load(out / "metrics.json")
    assert isinstance(metrics, dict)
    sae = metrics["saes"]["dead"]
    assert sae["log10_density"] == [None] * 128
    assert sae["reconstruction"]["relative_reconstruction_bias"] is None
    assert sae["reconstruction"]["dead_fraction"] == 1.0 and sae["spliced"] is None
    assert "<td>-</td>" in (out / "report.html").read_text()


def test_eval_refuses_a_bad_site_naming_the_cfg_file(tmp_path, caplog) -> None:
    sae = build_sae(
        SAEConfig(d_in=8, d_sae=16, k=2, metadata=SAEMetadata(site="layers.1.nonsense")), seed=0
    )
    save_sae(sae, tmp_path / "s")
    argv = ["eval", "--sae", str(tmp_path / "s"), "--acts", str(tmp_path), "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    assert f"{tmp_path / 's' / 'cfg.json'}: metadata site 'layers.1.nonsense'" in caplog.text
    assert "unknown site kind 'nonsense'" in caplog.text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_activations_are_refused_naming_the_batch(value: float) -> None:
    sae = build_sae(SAEConfig(d_in=16, d_sae=32, k=4), seed=0).eval()

    def batches():  # a user's iterator, not a cache: the check is in the metric itself
        for i in range(4):
            x = torch.randn(32, 16)
            if i == 2:
                x[5, 7] = value
            yield x

    with pytest.raises(SaescopeError, match=r"activation batch 2 .* first at index \[5, 7\] "):
        reconstruction_stats(sae, batches())
    with pytest.raises(SaescopeError, match=r"\(row 69 of the stream\)"):
        reconstruction_stats(sae, batches())


def test_evaluate_refuses_nan_activations_and_a_non_finite_reconstruction() -> None:
    sae = build_sae(SAEConfig(d_in=16, d_sae=32, k=4, metadata=SAEMetadata(site=SITE)), seed=0)
    x = torch.randn(64, 16)
    x[40, 0] = float("nan")
    with pytest.raises(SaescopeError, match="activation batch 1 "):
        evaluate(sae.eval(), x.split(32))
    with torch.no_grad():
        sae.W_dec.fill_(float("inf"))  # loaded SAEs are checked; this one was built in memory
    with pytest.raises(SaescopeError, match="reconstruction of batch 0 "):
        reconstruction_stats(sae, [torch.ones(8, 16)])


def test_strict_json_writes_null_for_every_non_finite_float() -> None:
    nan, inf = float("nan"), float("inf")
    text = strict_json({"a": nan, "b": [1.5, -inf, (inf, 2)], "c": {"d": None, "e": "NaN"}})
    assert json.loads(text, parse_constant=fail) == {
        "a": None,
        "b": [1.5, None, [None, 2]],
        "c": {"d": None, "e": "NaN"},
    }
    assert strict_json([1], indent=None) == "[1]"
