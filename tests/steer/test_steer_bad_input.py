"""Bad input to steer / predict / lens / neurons / features: one clear line and exit code 2,
never a traceback or a silent no-op."""

import math

import pytest
from tiny_models import save_tiny_model

from saescope import cli
from saescope.errors import SaescopeError
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae
from saescope.steer import OPS, Edit


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("steer-bad-input")
    save_tiny_model(root / "model", "gpt2")
    meta = SAEMetadata(model_name=str(root / "model"), hook_name="blocks.1.hook_resid_post")
    sae = build_sae(SAEConfig(d_in=64, d_sae=128, architecture="topk", k=4, metadata=meta), 0)
    save_sae(sae, root / "sae")
    return root


def _fails(argv: list[str], caplog, *expected: str) -> None:
    caplog.clear()
    assert cli.main(argv) == 2, argv
    for text in expected:
        assert text in caplog.text, (argv, caplog.text)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_edit_values_are_refused(value) -> None:
    with pytest.raises(SaescopeError, match="finite"):
        Edit(5, "clamp", float(value))
    with pytest.raises(SaescopeError, match="finite"):
        Edit.parse(f"5={value}", "add")
    assert math.isfinite(Edit.parse("5=1e3", "scale").value)


def test_edits_need_a_value_except_ablate() -> None:
    with pytest.raises(SaescopeError, match="INDEX=VALUE"):
        Edit.parse("5", "clamp")
    with pytest.raises(SaescopeError, match=r"expected INDEX, e\.g\."):
        Edit.parse("5=3", "ablate")
    assert Edit.parse("5", "ablate") == Edit(5, "ablate")


def test_the_cli_offers_exactly_the_library_ops(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["steer", "--help"])
    out = capsys.readouterr().out
    assert all(f"--{op}" in out for op in OPS)
    for op in OPS:
        Edit(0, op, 1.0)  # every op the CLI offers is one Edit accepts


def test_steer_refuses_bad_values_positions_and_sweeps(dirs, caplog) -> None:
    base = ["steer", "--model", str(dirs / "model"), "--sae", str(dirs / "sae")]
    base += ["--prompt", "Bridges span", "--max-new", "3"]
    _fails([*base, "--clamp", "5=nan"], caplog, "finite")
    _fails([*base, "--clamp", "5=inf"], caplog, "finite")
    _fails([*base, "--clamp", "5=40", "--positions", "9999"], caplog, "[9999] are never reached")
    _fails([*base, "--sweep", "5="], caplog, "--sweep", "no values")
    _fails([*base, "--sweep", "5=1,nan"], caplog, "finite")
    _fails([*base, "--clamp", "5=40", "--top", "0"], caplog, "--top must be between 1")
    _fails([*base, "--clamp", "5=40", "--top", "100000000"], caplog, "vocabulary size (300)")
    _fails([*base[:-4], "--prompt", "", "--clamp", "5=1"], caplog, "--prompt is empty")
    assert "Traceback" not in caplog.text


def test_predict_lens_neurons_and_features_refuse_empty_and_out_of_range(dirs, caplog) -> None:
    model = ["--model", str(dirs / "model")]
    _fails(["predict", *model, "--prompt", ""], caplog, "--prompt is empty")
    _fails(["predict", *model, "--prompt", "Bridges", "--top", "0"], caplog, "between 1 and")
    _fails(["predict", *model, "--prompt", "Bridges", "--top", "100000000"], caplog, "(300)")
    _fails(["lens", *model, "--prompt", "Bridges span", "--targets", ""], caplog, "no tokens")
    _fails(["lens", *model, "--prompt", "Bridges span", "--targets", ","], caplog, "no tokens")
    _fails(["neurons", *model, "--site", "layers.0.mlp_act", "--prompt", ""], caplog, "empty")
    features = ["features", *model, "--sae", str(dirs / "sae")]
    _fails([*features, "--prompt", ""], caplog, "--prompt is empty")
    _fails([*features, "--prompt", "Bridges span", "--top", "0"], caplog, "--top (features")


def test_long_prompts_are_refused_before_any_forward_pass(dirs, caplog, monkeypatch) -> None:
    from saescope.interpret import lens

    def never(*args, **kwargs):
        raise AssertionError("the model ran on a prompt that should have been refused")

    monkeypatch.setattr(lens, "predict", never)
    model = ["--model", str(dirs / "model")]
    long = "Bridges span rivers. " * 200  # over the tiny model's 256 positions
    _fails(["predict", *model, "--prompt", long], caplog, "takes at most 256")
    _fails(
        ["predict", *model, "--prompt", long, "--max-prompt-tokens", "100000"],
        caplog,
        "takes at most 256",
    )
    _fails(
        ["predict", *model, "--prompt", "Bridges span rivers. " * 5, "--max-prompt-tokens", "4"],
        caplog,
        "more than --max-prompt-tokens 4",
    )
    _fails(["steer", *model, "--prompt", long, "--neuron", "layers.0.mlp_act:3=1"], caplog, "256")
