"""The pretrained registry: names resolve through the local Hugging Face cache; a missing one
says what to download; ``saescope pretrained list`` and ``--format`` on the command line."""

from __future__ import annotations

import shutil

import pytest
import torch
from format_layouts import GEMMA_SCOPE_2

from saescope import cli
from saescope.errors import SaescopeError
from saescope.sae import load_sae
from saescope.sae.formats import FORMATS
from saescope.sae.pretrained import RELEASES, releases, resolve

NAME = "gemma-scope-2-270m-pt-res/layer_5_width_16k_l0_small"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hf_cache(root, folder: str = "resid_post/layer_5_width_16k_l0_small"):
    """A Hugging Face cache holding one Gemma Scope 2 folder, laid out as huggingface_hub
    lays it out (refs/main -> snapshots/<commit>/<files>)."""
    repo = root / "models--google--gemma-scope-2-270m-pt"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    tensors = GEMMA_SCOPE_2.tensors(6, 10)
    GEMMA_SCOPE_2.write(repo / "snapshots" / COMMIT / folder, tensors)
    return tensors


def test_a_name_resolves_through_the_local_cache(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    tensors = _hf_cache(tmp_path)
    path, fmt = resolve(NAME, cache_dir=tmp_path, offline=True)
    assert fmt == "gemma_scope_2" and path.name == "layer_5_width_16k_l0_small"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # where load_sae looks
    sae = load_sae(NAME)
    torch.testing.assert_close(sae.W_enc, tensors["w_enc"])
    assert sae.cfg.metadata.site == "layers.6.resid_post"  # from the file's own config.json


def test_a_missing_name_says_what_to_download(tmp_path) -> None:
    with pytest.raises(
        SaescopeError,
        match=r"not in the Hugging Face cache; download folder resid_post/layer_9_width_65k_l0_big/ of the Hugging Face repository google/gemma-scope-2-270m-pt",
    ):
        resolve(
            "gemma-scope-2-270m-pt-res/layer_9_width_65k_l0_big", cache_dir=tmp_path, offline=True
        )
    with pytest.raises(SaescopeError, match=r"has layers \[5, 9, 12, 15\] .* not layer 6"):
        resolve("gemma-scope-2-270m-pt-res/layer_6_width_16k_l0_small", cache_dir=tmp_path)
    with pytest.raises(SaescopeError, match=r"look like layer_5_width_16k_l0_small"):
        resolve("gemma-scope-2-270m-pt-res/layer_5", cache_dir=tmp_path)


def test_every_release_is_complete() -> None:
    for release in RELEASES.values():
        assert release.format in FORMATS
        assert release.folder(release.example().replace("<N>", "20"))  # its example id is valid
    assert {r.name for r in releases("gemma-3-270m")} == {
        "gemma-scope-2-270m-pt-res",
        "gemma-scope-2-270m-pt-res-all",
        "gemma-scope-2-270m-pt-mlp",
        "gemma-scope-2-270m-pt-att",
    }
    assert releases("google/gemma-3-270m") == releases("gemma-3-270m")


def test_pretrained_list_on_the_command_line(capsys, caplog) -> None:
    assert cli.main(["pretrained", "list", "--model", "gemma-3-270m"]) == 0
    out = capsys.readouterr().out
    assert "gemma-scope-2-270m-pt-res" in out and "layers.<L>.resid_post" in out
    assert "llama_scope" not in out
    assert cli.main(["pretrained", "list"]) == 0
    assert "llama_scope_lxr_8x" in capsys.readouterr().out
    assert cli.main(["pretrained", "list", "--model", "gpt-7"]) == 2
    assert "no known release for model 'gpt-7'" in caplog.text


def test_format_option_reaches_the_loader(tmp_path, caplog) -> None:
    """--format names the format; a wrong one is an error naming the file, exit 2."""
    path = GEMMA_SCOPE_2.write(tmp_path / "gs2", GEMMA_SCOPE_2.tensors(6, 10))
    shutil.copy(path / "config.json", path / "cfg.json")  # looks like SAELens too
    argv = [
        "eval",
        "--sae",
        str(path),
        "--acts",
        str(tmp_path / "no-cache"),
        "--out",
        str(tmp_path / "r"),
    ]
    assert cli.main([*argv, "--format", "sparsify"]) == 2
    assert (
        "gs2/cfg.json: read as sparsify" in caplog.text and "d_in must be a number" in caplog.text
    )
    args = cli.build_parser().parse_args(
        ["index", "--sae", "x", "--format", "gemma_scope_2", "--out", "i.db"]
    )
    cli.apply_sae_format(args)
    assert args.sae == "gemma_scope_2:x"
