"""A bad SAE directory on disk is a clear error naming the file, never a traceback or a silent
wrong SAE; the CLI turns it into one line and exit code 2."""

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from saescope import cli
from saescope.errors import SaescopeError
from saescope.sae import SAEConfig, SAEMetadata, build_sae, load_sae, save_sae


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    meta = SAEMetadata(site="layers.0.resid_post")
    sae = build_sae(SAEConfig(d_in=16, d_sae=32, k=4, metadata=meta), seed=0)
    return save_sae(sae, tmp_path / "good")


def with_cfg(saved: Path, cfg: Any) -> Path:
    bad = saved.parent / "bad"
    shutil.copytree(saved, bad)
    (bad / "cfg.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return bad


def cfg_of(saved: Path) -> dict[str, Any]:
    return json.loads((saved / "cfg.json").read_text())


def without(cfg: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in keys}


CASES = {
    "float d_in": (lambda c: {**c, "d_in": 16.9}, "d_in must be an integer, found 16.9"),
    "string d_in": (lambda c: {**c, "d_in": "16"}, "d_in must be an integer, found '16'"),
    "bool d_sae": (lambda c: {**c, "d_sae": True}, "d_sae must be an integer, found True"),
    "string k": (lambda c: {**c, "k": "4"}, "k must be an integer or null, found '4'"),
    "missing k": (lambda c: without(c, "k"), "topk needs 0 < k <= d_sae=32, got None"),
    "missing d_in": (lambda c: without(c, "d_in"), "missing d_in"),
    "missing architecture": (
        lambda c: without(c, "architecture", "saescope_architecture"),
        "missing architecture",
    ),
    "unknown dtype": (lambda c: {**c, "dtype": "float33"}, "dtype must be one of .*'float33'"),
    "string bool": (
        lambda c: {**c, "apply_b_dec_to_input": "false"},
        "apply_b_dec_to_input must be true or false",
    ),
    "list metadata": (lambda c: {**c, "metadata": [1]}, "metadata must be a JSON object"),
    "int site": (
        lambda c: {**c, "metadata": {"site": 6}},
        "metadata.site must be a string or null, found 6",
    ),
    "list at top level": (lambda c: [c], "expected a JSON object .* found a list"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_cfg_json_names_the_file_and_the_field(saved: Path, case: str) -> None:
    edit, message = CASES[case]
    bad = with_cfg(saved, edit(cfg_of(saved)))
    with pytest.raises(SaescopeError, match=message) as err:
        load_sae(bad)
    assert str(err.value).startswith(f"{bad / 'cfg.json'}: ")


def test_torch_prefixed_dtype_still_loads(saved: Path) -> None:
    bad = with_cfg(saved, {**cfg_of(saved), "dtype": "torch.float32"})
    assert load_sae(bad).cfg.dtype == "float32"


def test_unparsable_cfg_json(saved: Path) -> None:
    bad = with_cfg(saved, '{"d_in": 16,')
    with pytest.raises(SaescopeError, match=r"cfg.json is unreadable or not JSON"):
        load_sae(bad)


def test_missing_weights_and_wrong_shapes(saved: Path) -> None:
    bad = with_cfg(saved, {**cfg_of(saved), "d_in": 8})
    with pytest.raises(
        SaescopeError, match=r"tensor W_dec has shape \(32, 16\), expected \(32, 8\)"
    ):
        load_sae(bad)
    weights = safetensors.torch.load_file(saved / "sae_weights.safetensors")
    del weights["b_dec"]
    safetensors.torch.save_file(weights, saved / "sae_weights.safetensors")
    with pytest.raises(SaescopeError, match=r"missing tensors \['b_dec'\]"):
        load_sae(saved)
    (saved / "sae_weights.safetensors").unlink()
    with pytest.raises(SaescopeError, match=r"holds no sae_weights\.safetensors"):
        load_sae(saved)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(saved: Path, value: float) -> None:
    file = saved / "sae_weights.safetensors"
    weights = safetensors.torch.load_file(file)
    weights["W_dec"][3, 2] = value
    safetensors.torch.save_file(weights, file)
    with pytest.raises(
        SaescopeError, match=r"tensor W_dec holds 1 NaN/inf values \(first at \[3, 2\]\)"
    ):
        load_sae(saved)


def test_eval_cli_refuses_nan_weights_with_exit_2(saved: Path, tmp_path: Path, caplog) -> None:
    file = saved / "sae_weights.safetensors"
    weights = safetensors.torch.load_file(file)
    weights["b_enc"][0] = float("nan")
    safetensors.torch.save_file(weights, file)
    argv = ["eval", "--sae", str(saved), "--acts", str(tmp_path / "none"), "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    assert f"{file}: tensor b_enc holds 1 NaN/inf" in caplog.text


def test_config_refuses_types_directly() -> None:
    with pytest.raises(SaescopeError, match=r"d_in must be an integer, found 640\.9"):
        SAEConfig(d_in=640.9, d_sae=8, architecture="relu")  # type: ignore[arg-type]
    with pytest.raises(SaescopeError, match=r"metadata\.context_size must be an integer"):
        SAEMetadata(context_size="128")  # type: ignore[arg-type]
    assert torch.float32 == getattr(torch, SAEConfig(d_in=4, d_sae=8, architecture="relu").dtype)
