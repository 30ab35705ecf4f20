"""Files in each published layout (tiny dims) and each format's reference formula, written out
from its paper, tutorial or library source (not from saescope).

Each ``Layout`` has ``tensors(d, m)`` (the file's own names and orientations), ``write(dir,
tensors)`` (the published file names) and ``ref(tensors, x) -> (acts, x_hat)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

T = dict[str, Tensor]


def rand(*shape: int, scale: float = 0.3) -> Tensor:
    return torch.randn(*shape) * scale


@dataclass(frozen=True)
class Layout:
    name: str
    """The saescope format name."""
    tensors: Callable[[int, int], T]
    write: Callable[[Path, T], Path]
    """Writes the files; returns what to pass to load_sae."""
    ref: Callable[[T, Tensor], tuple[Tensor, Tensor]]
    weights: str
    """The weights file, relative to the directory."""
    matrix: str
    """A 2-D tensor of the file (to damage)."""


# -- Gemma Scope (Gemma 2): params.npz; the tutorial's JumpReLUSAE ------------------------------


def _gs_tensors(d: int, m: int, lower: bool = False) -> T:
    t = {
        "W_enc": rand(d, m),
        "W_dec": rand(m, d),
        "b_enc": rand(m, scale=0.1),
        "b_dec": rand(d, scale=0.5),
        "threshold": torch.rand(m) * 0.2,
    }
    return {k.lower(): v for k, v in t.items()} if lower else t


def gs_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    W_enc, W_dec = t.get("W_enc", t.get("w_enc")), t.get("W_dec", t.get("w_dec"))
    pre = x @ W_enc + t["b_enc"]  # no b_dec subtraction (Gemma Scope tutorial)
    acts = torch.relu(pre) * (pre > t["threshold"])
    return acts, acts @ W_dec + t["b_dec"]


def _write_npz(root: Path, t: T) -> Path:
    folder = root / "gemma-scope-2b-pt-res" / "layer_3" / "width_16k" / "average_l0_20"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "params.npz", **{k: v.numpy() for k, v in t.items()})
    return folder


GEMMA_SCOPE = Layout("gemma_scope", _gs_tensors, _write_npz, gs_ref, "params.npz", "W_enc")


# -- Gemma Scope 2 (Gemma 3): config.json + params.safetensors, lower-case keys ----------------


def _write_gs2(root: Path, t: T) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in t.items()}, root / "params.safetensors"
    )
    config = {
        "architecture": "jump_relu",
        "model_name": "gemma-v3-270m-pt",
        "hf_hook_point_in": "model.layers.6.output",
        "width": len(t["b_enc"]),
        "l0": 20,
        "type": "sae",
    }
    (root / "config.json").write_text(json.dumps(config))
    return root


GEMMA_SCOPE_2 = Layout(
    "gemma_scope_2",
    lambda d, m: _gs_tensors(d, m, lower=True),
    _write_gs2,
    gs_ref,
    "params.safetensors",
    "w_enc",
)


# -- sparsify: cfg.json + sae.safetensors (SparseCoder.encode / decode) -------------------------


def _sp_tensors(d: int, m: int) -> T:
    return {
        "encoder.weight": rand(m, d),
        "encoder.bias": rand(m, scale=0.1),
        "W_dec": rand(m, d),
        "b_dec": rand(d, scale=0.5),
    }


SPARSIFY_K = 3


def sp_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    pre = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    top = pre.topk(SPARSIFY_K, dim=-1)
    acts = torch.zeros_like(pre).scatter_(-1, top.indices, top.values)
    return acts, acts @ t["W_dec"] + t["b_dec"]


def _write_sparsify(root: Path, t: T) -> Path:
    folder = root / "layers.2"
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in t.items()}, folder / "sae.safetensors"
    )
    d = t["b_dec"].shape[0] if t["b_dec"].dim() else 0
    cfg = {
        "activation": "topk",
        "expansion_factor": 32,
        "normalize_decoder": True,
        "num_latents": len(t["encoder.bias"]),
        "k": SPARSIFY_K,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": d,
    }
    (folder / "cfg.json").write_text(json.dumps(cfg))
    (root / "config.json").write_text(json.dumps({"model": "EleutherAI/pythia-70m"}))
    return folder


SPARSIFY = Layout("sparsify", _sp_tensors, _write_sparsify, sp_ref, "sae.safetensors", "W_dec")


# -- Llama Scope: hyperparams.json + checkpoints/final.safetensors ------------------------------

LS_NORM, LS_THRESHOLD = 7.5, 0.15


def _ls_tensors(d: int, m: int) -> T:
    return {
        "encoder.weight": rand(m, d),
        "encoder.bias": rand(m, scale=0.1),
        "decoder.weight": rand(d, m),
        "decoder.bias": rand(d, scale=0.5),
    }


def ls_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    d = x.shape[-1]
    c = math.sqrt(d) / LS_NORM  # dataset-wise norm: inputs scaled to norm sqrt(d)
    pre = (c * x) @ t["encoder.weight"].T + t["encoder.bias"]
    acts = pre * (pre > LS_THRESHOLD)
    return acts, (acts @ t["decoder.weight"].T + t["decoder.bias"]) / c


def _write_ls(root: Path, t: T) -> Path:
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in t.items()}, root / "checkpoints" / "final.safetensors"
    )
    hp = {
        "d_model": len(t["decoder.bias"]),
        "d_sae": len(t["encoder.bias"]),
        "hook_point_in": "blocks.1.hook_resid_post",
        "hook_point_out": "blocks.1.hook_resid_post",
        "act_fn": "jumprelu",
        "jump_relu_threshold": LS_THRESHOLD,
        "norm_activation": "dataset-wise",
        "dataset_average_activation_norm": {"in": LS_NORM, "out": LS_NORM},
        "apply_decoder_bias_to_pre_encoder": False,
        "top_k": 50,
    }
    (root / "hyperparams.json").write_text(json.dumps(hp))
    return root


LLAMA_SCOPE = Layout(
    "llama_scope", _ls_tensors, _write_ls, ls_ref, "checkpoints/final.safetensors", "decoder.weight"
)


# -- Goodfire: one torch.save'd state dict ------------------------------------------------------


def _gf_tensors(d: int, m: int) -> T:
    return {
        "encoder_linear.weight": rand(m, d),
        "encoder_linear.bias": rand(m, scale=0.1),
        "decoder_linear.weight": rand(d, m),
        "decoder_linear.bias": rand(d, scale=0.5),
    }


def gf_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    acts = torch.relu(x @ t["encoder_linear.weight"].T + t["encoder_linear.bias"])
    return acts, acts @ t["decoder_linear.weight"].T + t["decoder_linear.bias"]


def _write_gf(root: Path, t: T) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    file = root / "Llama-3.1-8B-Instruct-SAE-l1.pth"
    torch.save(t, file)
    return file


GOODFIRE = Layout(
    "goodfire",
    _gf_tensors,
    _write_gf,
    gf_ref,
    "Llama-3.1-8B-Instruct-SAE-l1.pth",
    "encoder_linear.weight",
)


# -- dictionary_learning: ae.pt + config.json, one layout per dict_class ------------------------


def _dl_write(cls: str, **trainer: object) -> Callable[[Path, T], Path]:
    def write(root: Path, t: T) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        torch.save(t, root / "ae.pt")
        b = t.get("bias", t.get("b_dec", t.get("decoder_bias")))
        d = b.shape[0] if b is not None and b.dim() else 0
        m = next(len(t[n]) for n in ("encoder.bias", "b_enc", "gate_bias") if n in t)
        config = {
            "trainer": {
                "dict_class": cls,
                "activation_dim": d,
                "dict_size": m,
                "layer": 2,
                "lm_name": "EleutherAI/pythia-70m-deduped",
                "submodule_name": "resid_post_layer_2",
                **trainer,
            },
            "buffer": {"d_submodule": d, "io": "out", "ctx_len": 128},
        }
        (root / "config.json").write_text(json.dumps(config))
        return root

    return write


def _dl_ae(d: int, m: int) -> T:
    return {
        "bias": rand(d, scale=0.5),
        "encoder.weight": rand(m, d),
        "encoder.bias": rand(m, scale=0.1),
        "decoder.weight": rand(d, m),
    }


def dl_ae_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    acts = torch.relu((x - t["bias"]) @ t["encoder.weight"].T + t["encoder.bias"])
    return acts, acts @ t["decoder.weight"].T + t["bias"]


def _dl_gated(d: int, m: int) -> T:
    return {
        "decoder_bias": rand(d, scale=0.5),
        "encoder.weight": rand(m, d),
        "r_mag": rand(m, scale=0.2),
        "gate_bias": rand(m, scale=0.1),
        "mag_bias": rand(m, scale=0.1),
        "decoder.weight": rand(d, m),
    }


def dl_gated_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    x_enc = (x - t["decoder_bias"]) @ t["encoder.weight"].T
    f_gate = (x_enc + t["gate_bias"] > 0).float()
    f_mag = torch.relu(t["r_mag"].exp() * x_enc + t["mag_bias"])
    acts = f_gate * f_mag
    return acts, acts @ t["decoder.weight"].T + t["decoder_bias"]


def _dl_jump(d: int, m: int) -> T:
    return {
        "W_enc": rand(d, m),
        "b_enc": rand(m, scale=0.1),
        "W_dec": rand(m, d),
        "b_dec": rand(d, scale=0.5),
        "threshold": torch.rand(m) * 0.2,
    }


def dl_jump_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    pre = x @ t["W_enc"] + t["b_enc"]  # apply_b_dec_to_input False (its default)
    acts = torch.relu(pre * (pre > t["threshold"]))
    return acts, acts @ t["W_dec"] + t["b_dec"]


DL_K = 3


def _dl_topk(d: int, m: int) -> T:
    return {
        "k": torch.tensor(DL_K, dtype=torch.int),
        "threshold": torch.tensor(-1.0),
        "encoder.weight": rand(m, d),
        "encoder.bias": rand(m, scale=0.1),
        "decoder.weight": rand(d, m),
        "b_dec": rand(d, scale=0.5),
    }


def dl_topk_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    post_relu = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    top = post_relu.topk(DL_K, dim=-1)
    acts = torch.zeros_like(post_relu).scatter_(-1, top.indices, top.values)
    return acts, acts @ t["decoder.weight"].T + t["b_dec"]


def _dl_batchtopk(d: int, m: int) -> T:
    return {**_dl_topk(d, m), "threshold": torch.tensor(0.12)}


def dl_batchtopk_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    post_relu = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    acts = post_relu * (post_relu > t["threshold"])  # use_threshold=True: inference
    return acts, acts @ t["decoder.weight"].T + t["b_dec"]


def _dl_matryoshka(d: int, m: int) -> T:
    return {
        "k": torch.tensor(DL_K, dtype=torch.int),
        "threshold": torch.tensor(0.08),
        "group_sizes": torch.tensor([m // 2, m - m // 2]),
        "W_enc": rand(d, m),
        "b_enc": rand(m, scale=0.1),
        "W_dec": rand(m, d),
        "b_dec": rand(d, scale=0.5),
    }


def dl_matryoshka_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    post_relu = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    acts = post_relu * (post_relu > t["threshold"])
    return acts, acts @ t["W_dec"] + t["b_dec"]


DICTIONARY_LEARNING = {
    "AutoEncoder": Layout(
        "dictionary_learning",
        _dl_ae,
        _dl_write("AutoEncoder"),
        dl_ae_ref,
        "ae.pt",
        "encoder.weight",
    ),
    "GatedAutoEncoder": Layout(
        "dictionary_learning",
        _dl_gated,
        _dl_write("GatedAutoEncoder"),
        dl_gated_ref,
        "ae.pt",
        "decoder.weight",
    ),
    "JumpReluAutoEncoder": Layout(
        "dictionary_learning",
        _dl_jump,
        _dl_write("JumpReluAutoEncoder"),
        dl_jump_ref,
        "ae.pt",
        "W_enc",
    ),
    "AutoEncoderTopK": Layout(
        "dictionary_learning",
        _dl_topk,
        _dl_write("AutoEncoderTopK", k=DL_K),
        dl_topk_ref,
        "ae.pt",
        "encoder.weight",
    ),
    "BatchTopKSAE": Layout(
        "dictionary_learning",
        _dl_batchtopk,
        _dl_write("BatchTopKSAE", k=DL_K),
        dl_batchtopk_ref,
        "ae.pt",
        "decoder.weight",
    ),
    "MatryoshkaBatchTopKSAE": Layout(
        "dictionary_learning",
        _dl_matryoshka,
        _dl_write("MatryoshkaBatchTopKSAE", k=DL_K),
        dl_matryoshka_ref,
        "ae.pt",
        "W_dec",
    ),
}


# -- SAELens v6 and pre-6.0 ---------------------------------------------------------------------

SL_K = 3


def _sl_write(arch: str, pre6: bool = False, **extra: object) -> Callable[[Path, T], Path]:
    def write(root: Path, t: T) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        safetensors.torch.save_file(
            {k: v.contiguous() for k, v in t.items()}, root / "sae_weights.safetensors"
        )
        d, m = len(t["b_dec"]), len(t["b_gate"] if "b_gate" in t else t["b_enc"])
        if pre6:
            cfg = {
                "d_in": d,
                "d_sae": m,
                "hook_point": "blocks.2.hook_resid_post",
                "hook_point_layer": 2,
                "model_name": "gpt2",
                "activation_fn_str": "topk" if arch == "topk" else "relu",
                "activation_fn_kwargs": {"k": SL_K} if arch == "topk" else {},
                "apply_b_dec_to_input": True,
                "normalize_activations": False,
                "context_size": 128,
                "dtype": "torch.float32",
            }
        else:
            cfg = {
                "architecture": arch,
                "d_in": d,
                "d_sae": m,
                "dtype": "float32",
                "device": "cpu",
                "apply_b_dec_to_input": True,
                "normalize_activations": "none",
                "reshape_activations": "none",
                "metadata": {
                    "model_name": "gpt2",
                    "hook_name": "blocks.2.hook_resid_post",
                    "sae_lens_version": "6.54.12",
                },
                **extra,
            }
        (root / "cfg.json").write_text(json.dumps(cfg))
        return root

    return write


def _sl_std(d: int, m: int) -> T:
    return {
        "W_enc": rand(d, m),
        "b_enc": rand(m, scale=0.1),
        "W_dec": rand(m, d),
        "b_dec": rand(d, scale=0.5),
    }


def sl_std_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    acts = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    return acts, acts @ t["W_dec"] + t["b_dec"]


def sl_topk_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    top = pre.topk(SL_K, dim=-1)
    acts = torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
    return acts, acts @ t["W_dec"] + t["b_dec"]


def _sl_jump(d: int, m: int) -> T:
    return {**_sl_std(d, m), "threshold": torch.rand(m) * 0.2}


def sl_jump_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    acts = torch.relu(pre) * (pre > t["threshold"])
    return acts, acts @ t["W_dec"] + t["b_dec"]


def _sl_gated(d: int, m: int) -> T:
    return {
        "W_enc": rand(d, m),
        "W_dec": rand(m, d),
        "b_dec": rand(d, scale=0.5),
        "b_gate": rand(m, scale=0.1),
        "b_mag": rand(m, scale=0.1),
        "r_mag": rand(m, scale=0.2),
    }


def sl_gated_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    x_c = x - t["b_dec"]
    gate = (x_c @ t["W_enc"] + t["b_gate"]) > 0
    mag = torch.relu(x_c @ (t["W_enc"] * t["r_mag"].exp()) + t["b_mag"])
    acts = gate * mag
    return acts, acts @ t["W_dec"] + t["b_dec"]


SAELENS = {
    "standard": Layout(
        "saelens", _sl_std, _sl_write("standard"), sl_std_ref, "sae_weights.safetensors", "W_enc"
    ),
    "topk": Layout(
        "saelens",
        _sl_std,
        _sl_write("topk", k=SL_K),
        sl_topk_ref,
        "sae_weights.safetensors",
        "W_dec",
    ),
    "jumprelu": Layout(
        "saelens", _sl_jump, _sl_write("jumprelu"), sl_jump_ref, "sae_weights.safetensors", "W_enc"
    ),
    "gated": Layout(
        "saelens", _sl_gated, _sl_write("gated"), sl_gated_ref, "sae_weights.safetensors", "W_dec"
    ),
    "pre6-relu": Layout(
        "saelens",
        _sl_std,
        _sl_write("standard", pre6=True),
        sl_std_ref,
        "sae_weights.safetensors",
        "W_enc",
    ),
    "pre6-topk": Layout(
        "saelens",
        _sl_std,
        _sl_write("topk", pre6=True),
        sl_topk_ref,
        "sae_weights.safetensors",
        "W_enc",
    ),
}

LAYOUTS: dict[str, Layout] = {
    "gemma_scope": GEMMA_SCOPE,
    "gemma_scope_2": GEMMA_SCOPE_2,
    "sparsify": SPARSIFY,
    "llama_scope": LLAMA_SCOPE,
    "goodfire": GOODFIRE,
    **{f"dictionary_learning-{k}": v for k, v in DICTIONARY_LEARNING.items()},
    **{f"saelens-{k}": v for k, v in SAELENS.items()},
}
