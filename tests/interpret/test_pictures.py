import re

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_model

from saescope import cli
from saescope.errors import SaescopeError
from saescope.interpret.pictures import clipped_values, colour_limits, residual_vectors


def _vectors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(640, generator=g)
    b = torch.randn(640, generator=g) * 2
    a[163] = 3_000.0  # one huge dimension, as Gemma's resid stream has
    b[7] = -500.0
    return {"layers.0": a, "layers.1": b}


def test_percentile_limits_are_one_shared_percentile_of_the_magnitudes() -> None:
    vectors = _vectors()
    magnitudes = np.abs(np.concatenate([v.numpy() for v in vectors.values()]))
    limits = colour_limits(vectors)  # default: percentile 99
    expected = float(np.percentile(magnitudes, 99))
    assert limits == pytest.approx(dict.fromkeys(vectors, expected))
    assert expected < 10  # the two huge values no longer set the scale
    assert colour_limits(vectors, "percentile", 50)["layers.0"] == pytest.approx(
        float(np.percentile(magnitudes, 50))
    )
    assert colour_limits(vectors, "shared") == dict.fromkeys(vectors, 3_000.0)
    assert colour_limits(vectors, "symmetric") == {"layers.0": 3_000.0, "layers.1": 500.0}
    clipped = clipped_values(vectors, limits)
    assert clipped["layers.0"][0] == (163, 3_000.0) and clipped["layers.1"][0] == (7, -500.0)
    n_clipped = sum(len(c) for c in clipped.values())
    assert n_clipped == int((torch.from_numpy(magnitudes) > expected).sum())
    with pytest.raises(SaescopeError, match="clip percentile"):
        colour_limits(vectors, "percentile", 0)


def test_residual_vectors_refuse_layers_and_positions_outside_the_model(model) -> None:
    with pytest.raises(SaescopeError, match=r"layers \[3\] are outside .* layers 0..2"):
        residual_vectors(model, "Bridges span", layers=[0, 3])
    with pytest.raises(SaescopeError, match="outside the prompt"):
        residual_vectors(model, "Bridges span", position=30)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_model(path, "llama")
    return path


def test_pictures_command_writes_the_png_and_lists_what_it_clips(model_dir, tmp_path, capsys):
    out = tmp_path / "pictures.png"
    argv = ["pictures", "--model", str(model_dir), "--prompt", "Bridges span rivers"]
    assert cli.main([*argv, "--layers", "0-1,2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size > 1000 and "clipped dimensions" in printed
    assert "layers.2" in printed and "embed" in printed
    assert cli.main([*argv, "--scale", "symmetric", "--out", str(out)]) == 0


@pytest.mark.parametrize(
    ("layers", "message"),
    [("0,3", r"layers \[3\] are outside"), ("six", "not a list of layer numbers")],
)
def test_pictures_command_refuses_bad_layers(model_dir, tmp_path, caplog, layers, message):
    out = tmp_path / "p.png"
    argv = ["pictures", "--model", str(model_dir), "--prompt", "Bridges", "--layers", layers]
    assert cli.main([*argv, "--out", str(out)]) == 2
    assert any(re.search(message, r.getMessage()) for r in caplog.records)
    assert not out.exists()


def test_pictures_command_explains_itself(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pictures", "--help"])
    assert exit_info.value.code == 0 and "--scale" in capsys.readouterr().out
