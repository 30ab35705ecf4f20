"""SAEs written by the real libraries (SAELens, sparsify, dictionary_learning) load in saescope
with the libraries' own outputs, and saescope's files load in SAELens and sparsify.

The libraries live in a venv of their own (``make venv-peers``: ``.venv-peers``; or the python
named by SAESCOPE_PEER_PYTHON); ``peer_script.py`` runs there, in a subprocess. Without that
venv these tests skip, except under CI (the CI variable set), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from saescope.sae import SAE, SAEConfig, SAEMetadata, build_sae, save_sae
from saescope.sae import load_sae as load_saelens

SCRIPT = Path(__file__).with_name("peer_script.py")
ROOT = Path(__file__).parents[2]
TOL = 1e-5


def peer_python() -> str:
    named = os.environ.get("SAESCOPE_PEER_PYTHON")
    found = named or str(ROOT / ".venv-peers" / "bin" / "python")
    if Path(found).exists():
        return found
    why = f"no peer python at {found} (make venv-peers, or set SAESCOPE_PEER_PYTHON)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {why}")
    pytest.skip(why)


def run_peer(*args: str) -> None:
    done = subprocess.run(
        [peer_python(), str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("peers")
    run_peer("write", str(root))
    return root, json.loads((root / "manifest.json").read_text())


def load_any(path: Path) -> SAE:
    """saescope's loader for whatever format ``path`` holds."""
    from saescope.sae.formats import load_sae

    return load_sae(path)


def check_outputs(sae: SAE, path: Path) -> None:
    io = load_file(path / "io.safetensors")
    x = io["x"]
    with torch.no_grad():
        latents = sae.encode_dense(x)
        out = sae(x).x_hat
    assert latents.shape == io["latents"].shape and out.shape == io["out"].shape
    assert (latents - io["latents"]).abs().max() <= TOL, path
    assert (out - io["out"]).abs().max() <= TOL, path
    assert int((io["latents"] > 0).sum()) > 0  # something fired: a vacuous match is no match


def entries(written, lib: str) -> list[dict]:
    _, manifest = written
    found = [e for e in manifest if e["lib"] == lib]
    assert found, f"{lib} wrote nothing"
    return found


def test_saelens_files_load_with_saelens_outputs(written) -> None:
    root, _ = written
    archs = set()
    for entry in entries(written, "sae_lens"):
        sae = load_saelens(root / entry["path"])
        check_outputs(sae, root / entry["path"])
        archs.add(entry["arch"])
    assert {"standard", "topk", "jumprelu", "gated", "jumprelu_skip_transcoder"} <= archs


def test_saelens_files_through_the_format_detector(written) -> None:
    root, _ = written
    for entry in entries(written, "sae_lens"):
        check_outputs(load_any(root / entry["path"]), root / entry["path"])


def test_sparsify_files_load_with_sparsify_outputs(written) -> None:
    root, _ = written
    for entry in entries(written, "sparsify"):
        check_outputs(load_any(root / entry["path"]), root / entry["path"])


def test_dictionary_learning_files_load_with_its_outputs(written) -> None:
    root, _ = written
    archs = set()
    for entry in entries(written, "dictionary_learning"):
        check_outputs(load_any(root / entry["path"]), root / entry["path"])
        archs.add(entry["arch"])
    assert {"standard", "topk", "batch_topk", "jumprelu"} <= archs


# -- the reverse: saescope writes, the libraries read ------------------------------------------


def _random(cfg: SAEConfig, seed: int) -> SAE:
    sae = build_sae(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * 0.3
            p.copy_(noise.abs() * 0.2 if name == "threshold" else p + noise)
    return sae.eval()


def _saescope_saes() -> dict[str, tuple[str, SAE]]:
    meta = SAEMetadata(model_name="tiny", site="layers.1.resid_post")
    tc_meta = SAEMetadata(model_name="tiny", site="layers.1.mlp_in", site_out="layers.1.mlp_out")
    tc = dict(apply_b_dec_to_input=False, d_out=12, metadata=tc_meta)
    return {
        "relu": ("sae_lens", _random(SAEConfig(16, 48, "relu", metadata=meta), 1)),
        "topk": ("sae_lens", _random(SAEConfig(16, 48, "topk", k=6, metadata=meta), 2)),
        "jumprelu": ("sae_lens", _random(SAEConfig(16, 48, "jumprelu", metadata=meta), 3)),
        "gated": ("sae_lens", _random(SAEConfig(16, 48, "gated", metadata=meta), 4)),
        "jumprelu_skip_transcoder": (
            "sae_lens",
            _random(SAEConfig(16, 48, "jumprelu", skip=True, **tc), 5),  # type: ignore[arg-type]
        ),
        "sparsify_topk": ("sparsify", _random(SAEConfig(16, 48, "topk", k=6, metadata=meta), 6)),
    }


@pytest.mark.parametrize("lib", ["sae_lens", "sparsify"])
def test_saescope_files_load_in_saelens_and_sparsify(tmp_path, lib) -> None:
    manifest = []
    saes = {name: entry for name, entry in _saescope_saes().items() if entry[0] == lib}
    for name, (lib, sae) in saes.items():
        path = tmp_path / name
        if lib == "sae_lens":
            save_sae(sae, path)
        else:
            from saescope.sae.formats import save_sparsify

            save_sparsify(sae, path)
        x = torch.randn(1000, 16, generator=torch.Generator().manual_seed(7))
        save_file({"x": x}, path / "x.safetensors")
        manifest.append({"lib": lib, "path": name})
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    run_peer("read", str(tmp_path))
    for name, (_, sae) in saes.items():
        check_outputs(sae, tmp_path / name)
