import pytest
from tiny_models import save_tiny_model

from saescope import cli
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("steer-cli")
    save_tiny_model(root / "model", "gpt2")
    meta = SAEMetadata(model_name=str(root / "model"), hook_name="blocks.1.hook_resid_post")
    sae = build_sae(SAEConfig(d_in=64, d_sae=128, architecture="topk", k=4, metadata=meta), 0)
    save_sae(sae, root / "sae")
    return root


def test_steer_explains_itself(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["steer", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--clamp" in out and "--sweep" in out and "--no-error-term" in out


def test_steer_from_the_command_line(dirs, capsys, caplog) -> None:
    base = ["steer", "--model", str(dirs / "model"), "--prompt", "Bridges span", "--max-new", "4"]
    sae = ["--sae", str(dirs / "sae")]
    argv = [*base, *sae, "--clamp", "5=40", "--ablate", "7", "--samples", "2", "--top", "3"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "clean vs clamp 5=40, ablate 7" in out and "continuations" in out
    assert cli.main([*base, *sae, "--sweep", "5=0,40", "--no-error-term"]) == 0
    out = capsys.readouterr().out
    assert "clamp feature 5" in out and "40" in out
    assert cli.main([*base, "--neuron", "layers.0.mlp_act:3=10", "--positions", "generated"]) == 0
    assert "neuron layers.0.mlp_act:3=10" in capsys.readouterr().out
    assert cli.main([*base, "--clamp", "5=1"]) == 2  # no --sae
    assert "need --sae" in caplog.text
    assert cli.main([*base, *sae, "--clamp", "500=1"]) == 2
    assert "128 latents" in caplog.text
    assert cli.main([*base, "--neuron", "3=10"]) == 2
    assert "SITE:UNIT=VALUE" in caplog.text
