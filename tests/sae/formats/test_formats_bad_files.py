"""Bad files in every format: each is refused with an error naming the file and the format it
was read as; a pickle that is not a plain state dict is refused, never executed."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from format_layouts import LAYOUTS, Layout

from saescope.errors import SaescopeError
from saescope.sae import load_sae

_ONE_PER_FORMAT = [
    "gemma_scope",
    "gemma_scope_2",
    "sparsify",
    "llama_scope",
    "goodfire",
    "dictionary_learning-AutoEncoder",
    "dictionary_learning-MatryoshkaBatchTopKSAE",
    "saelens-jumprelu",
]


def _written(layout: Layout, tmp_path: Path, **replace: torch.Tensor) -> tuple[Path, Path]:
    tensors = {**layout.tensors(6, 10), **replace}
    path = layout.write(tmp_path / "sae", tensors)
    root = path if path.is_dir() else path.parent
    return path, root / layout.weights


@pytest.mark.parametrize("name", _ONE_PER_FORMAT)
def test_truncated_weights_name_the_file(name: str, tmp_path) -> None:
    layout = LAYOUTS[name]
    path, weights = _written(layout, tmp_path)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(SaescopeError, match=r"corrupt|truncated|not a plain state dict") as err:
        load_sae(path)
    assert str(weights) in str(err.value)


@pytest.mark.parametrize("name", _ONE_PER_FORMAT)
def test_wrong_shape_names_the_tensor(name: str, tmp_path) -> None:
    layout = LAYOUTS[name]
    matrix = layout.tensors(6, 10)[layout.matrix]
    path, weights = _written(
        layout, tmp_path, **{layout.matrix: torch.randn(matrix.shape[0] + 1, matrix.shape[1])}
    )
    with pytest.raises(SaescopeError, match=rf"tensor {layout.matrix} has shape") as err:
        load_sae(path)
    assert str(weights) in str(err.value)


@pytest.mark.parametrize("name", _ONE_PER_FORMAT)
def test_wrong_dtype_names_the_tensor(name: str, tmp_path) -> None:
    layout = LAYOUTS[name]
    matrix = layout.tensors(6, 10)[layout.matrix]
    path, weights = _written(
        layout, tmp_path, **{layout.matrix: torch.ones(matrix.shape, dtype=torch.int32)}
    )
    with pytest.raises(
        SaescopeError, match=rf"{layout.matrix} has dtype torch.int32, expected a float"
    ) as err:
        load_sae(path)
    assert str(weights) in str(err.value)


class _Payload:
    """Unpickling this runs a command: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["goodfire", "dictionary_learning-AutoEncoder"])
def test_a_pickle_with_code_is_refused_not_executed(name: str, tmp_path) -> None:
    layout = LAYOUTS[name]
    path, weights = _written(layout, tmp_path)
    marker = tmp_path / "executed"
    torch.save({"encoder_linear.weight": _Payload(marker)}, weights)
    with pytest.raises(
        SaescopeError, match=r"not a plain state dict .*refused, not executed"
    ) as err:
        load_sae(path)
    assert str(weights) in str(err.value) and not marker.exists()
    with weights.open("wb") as f:  # a bare pickle (no torch zip) too
        pickle.dump(_Payload(marker), f)
    with pytest.raises(SaescopeError, match="refused, not executed"):
        load_sae(path)
    assert not marker.exists()


def test_a_pickled_module_is_not_a_state_dict(tmp_path) -> None:
    layout = LAYOUTS["dictionary_learning-AutoEncoder"]
    path, weights = _written(layout, tmp_path)
    torch.save(torch.nn.Linear(6, 10), weights)  # the whole module, not its state_dict()
    with pytest.raises(SaescopeError, match="not a plain state dict"):
        load_sae(path)
    torch.save([torch.zeros(3)], weights)
    with pytest.raises(SaescopeError, match=r"holds no state dict"):
        load_sae(path)


def test_npz_with_objects_is_refused(tmp_path) -> None:
    import numpy as np

    folder = tmp_path / "gemma-scope-2b-pt-res" / "layer_3" / "width_16k" / "average_l0_20"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", W_enc=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SaescopeError, match=r"params\.npz: read as Gemma Scope .*pickled objects"):
        load_sae(folder)


def test_nan_weights_are_refused(tmp_path) -> None:
    layout = LAYOUTS["gemma_scope_2"]
    bad = torch.randn(6, 10)
    bad[1, 2] = float("nan")
    path, weights = _written(layout, tmp_path, w_enc=bad)
    with pytest.raises(SaescopeError, match="W_enc holds 1 NaN/inf") as err:
        load_sae(path)
    assert str(weights) in str(err.value)


# -- transcoders: read (test_formats_transcoders.py); what is still unsupported says why --------


def test_unsupported_transcoder_files_are_refused_clearly(tmp_path) -> None:
    message = r"it is a transcoder \(.*\), which saescope does not read: "
    gs2 = LAYOUTS["gemma_scope_2"]
    # a cross-layer transcoder whose input layer (6, from the hook) has no slot in w_dec
    path, _ = _written(gs2, tmp_path / "c", w_dec=torch.randn(10, 3, 6))
    with pytest.raises(SaescopeError, match=r"params.safetensors: .*out_layer=6 is not an output"):
        load_sae(path)
    # an output hook saescope has no site for: readable, but no output site to splice
    path, _ = _written(gs2, tmp_path / "b")
    config = json.loads((path / "config.json").read_text())
    config["hf_hook_point_out"] = "model.layers.6.self_attn.o_proj.input"
    (path / "config.json").write_text(json.dumps(config))
    from saescope.sae import sae_site_out

    sae = load_sae(path)
    assert sae.cfg.is_transcoder and sae.cfg.metadata.site_out is None
    with pytest.raises(SaescopeError, match=r"gemma_scope_2\): metadata names no site"):
        sae_site_out(sae)
    ls = LAYOUTS["llama_scope"]
    path, _ = _written(ls, tmp_path / "f")
    hp = json.loads((path / "hyperparams.json").read_text())
    (path / "hyperparams.json").write_text(
        json.dumps(
            {
                **hp,
                "hook_point_in": "blocks.1.ln2.hook_normalized",
                "hook_point_out": "blocks.1.hook_mlp_out",
            }
        )
    )
    with pytest.raises(
        SaescopeError, match=rf"hyperparams.json: .*{message}.*dataset_average_activation_norm.out"
    ):
        load_sae(path)
    dl = LAYOUTS["dictionary_learning-AutoEncoder"]
    path, _ = _written(dl, tmp_path / "h")
    config = json.loads((path / "config.json").read_text())
    config["buffer"] = {**config.get("buffer", {}), "io": "in_and_out"}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        SaescopeError, match=rf"config.json: .*{message}dictionary_learning defines no"
    ):
        load_sae(path)
    # SAELens transcoders are read (tests/sae/test_transcoder.py); one missing d_out is refused.
    sl = LAYOUTS["saelens-jumprelu"]
    path, _ = _written(sl, tmp_path / "g")
    cfg = json.loads((path / "cfg.json").read_text())
    (path / "cfg.json").write_text(json.dumps({**cfg, "architecture": "jumprelu_skip_transcoder"}))
    with pytest.raises(SaescopeError, match="transcoder's but d_out is missing"):
        load_sae(path)
    (path / "cfg.json").write_text(json.dumps({**cfg, "architecture": "clt"}))
    with pytest.raises(SaescopeError, match=rf"cfg.json: .*{message}a cross-layer transcoder"):
        load_sae(path)


def test_unfoldable_normalisation_and_unknown_classes(tmp_path) -> None:
    sl = LAYOUTS["saelens-standard"]
    path, _ = _written(sl, tmp_path / "a")
    cfg = json.loads((path / "cfg.json").read_text())
    (path / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": "layer_norm"}))
    with pytest.raises(SaescopeError, match=r"normalize_activations='layer_norm' cannot be folded"):
        load_sae(path)
    dl = LAYOUTS["dictionary_learning-AutoEncoder"]
    path, _ = _written(dl, tmp_path / "b")
    config = json.loads((path / "config.json").read_text())
    config["trainer"]["dict_class"] = "CrossCoder"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        SaescopeError, match=r"config.json: read as dictionary_learning .*'CrossCoder'"
    ):
        load_sae(path)
