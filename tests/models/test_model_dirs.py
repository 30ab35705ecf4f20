"""A local model directory that saescope would not load safely is a one-line error."""

import pytest
import torch
from tiny_models import save_tiny_model, tiny_hf_model, tiny_tokenizer

from saescope import cli
from saescope.errors import SaescopeError
from saescope.models import load_model


def pickled_dir(path, with_tokenizer: bool):
    # transformers 5 always writes safetensors from save_pretrained, so write the pickle itself
    model = tiny_hf_model("llama")
    model.config.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    if with_tokenizer:
        tiny_tokenizer().save_pretrained(path)
    return path


@pytest.mark.parametrize("with_tokenizer", [False, True])
def test_a_pickled_only_directory_is_refused(tmp_path, with_tokenizer: bool) -> None:
    # Without the check, transformers 5.24 loads the pickle when a tokenizer is present, and
    # fails with a multi-line tokenizer ValueError when not.
    path = pickled_dir(tmp_path, with_tokenizer)
    with pytest.raises(SaescopeError, match=r"holds only a pickled pytorch_model\.bin") as err:
        load_model(str(path), dtype="fp32", device="cpu")
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_the_cli_refuses_it_with_exit_2(tmp_path, caplog) -> None:
    path = pickled_dir(tmp_path, with_tokenizer=True)
    assert cli.main(["sites", "--model", str(path)]) == 2
    assert "saescope loads safetensors only" in caplog.text


def test_safetensors_beside_a_pickle_load_and_no_tokenizer_is_one_line(tmp_path) -> None:
    save_tiny_model(tmp_path / "both", "llama")
    torch.save({}, tmp_path / "both" / "pytorch_model.bin")
    assert load_model(str(tmp_path / "both"), dtype="fp32", device="cpu").name
    tiny_hf_model("llama").save_pretrained(tmp_path / "no-tokenizer")
    with pytest.raises(SaescopeError, match="could not load model") as err:
        load_model(str(tmp_path / "no-tokenizer"), dtype="fp32", device="cpu")
    assert "\n" not in str(err.value)


def test_truncated_weights_are_one_line(tmp_path) -> None:
    save_tiny_model(tmp_path / "m", "llama")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(SaescopeError, match="weights are damaged"):
        load_model(str(tmp_path / "m"), dtype="fp32", device="cpu")
