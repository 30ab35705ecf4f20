"""Transcoder files in their published layouts (tiny dims) and the reference formula of each,
written out from the format's tutorial or library source (not from saescope).

    Gemma Scope 2 (Google's tutorial ``JumpReLUSAE.forward``):
        pre = x @ w_enc + b_enc;  acts = relu(pre) * (pre > threshold)
        out = acts @ w_dec + b_dec + x @ affine_skip_connection        affine (d_in, d_out)
    Gemma Scope 2 cross-layer transcoder, input layer L, output layer J (circuit-tracer):
        w_dec (d_sae, n_layers, d_out) by absolute output layer; out_J gets acts_L @ w_dec[:, J]
    Gemma Scope 1 transcoders: the Gemma Scope formula, W_dec (d_sae, d_out).
    sparsify ``SparseCoder`` with ``transcode``: no ``x - b_dec`` before the encoder;
        out = topk(relu(x @ enc.T + enc_b)) @ W_dec + b_dec + x @ W_skip.mT
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

T = dict[str, Tensor]
SP_K = 3


def rand(*shape: int, scale: float = 0.3) -> Tensor:
    return torch.randn(*shape) * scale


def jumprelu_tensors(d: int, m: int, o: int, skip: bool) -> T:
    t = {
        "w_enc": rand(d, m),
        "w_dec": rand(m, o),
        "b_enc": rand(m, scale=0.1),
        "b_dec": rand(o, scale=0.5),
        "threshold": torch.rand(m) * 0.2,
    }
    if skip:
        t["affine_skip_connection"] = rand(d, o)
    return t


def gs_tc_ref(t: T, x: Tensor) -> tuple[Tensor, Tensor]:
    W_enc, W_dec = t.get("w_enc", t.get("W_enc")), t.get("w_dec", t.get("W_dec"))
    assert W_enc is not None and W_dec is not None
    pre = x @ W_enc + t["b_enc"]
    acts = torch.relu(pre) * (pre > t["threshold"])
    out = acts @ W_dec + t["b_dec"]
    if "affine_skip_connection" in t:
        out = out + x @ t["affine_skip_connection"]
    return acts, out


def save(file: Path, t: T) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in t.items()}, file)


def write_gs2_transcoder(root: Path, t: T, layer: int = 5) -> Path:
    affine = "affine_skip_connection" in t
    folder = (
        root / "transcoder_all" / f"layer_{layer}_width_16k_l0_big{'_affine' if affine else ''}"
    )
    save(folder / "params.safetensors", t)
    config = {  # the keys and values of a published transcoder_all config.json
        "hf_hook_point_in": f"model.layers.{layer}.pre_feedforward_layernorm.output",
        "hf_hook_point_out": f"model.layers.{layer}.post_feedforward_layernorm.output",
        "width": len(t["b_enc"]),
        "model_name": "gemma-v3-270m-pt",
        "architecture": "jump_relu",
        "l0": 60,
        "affine_connection": affine,
        "type": "transcoder",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def clt_tensors(d: int, m: int, layer: int, n_layers: int) -> T:
    t = jumprelu_tensors(d, m, d, skip=True)
    w_dec = rand(m, n_layers, d)
    w_dec[:, :layer] = 0  # a layer writes to itself and later layers only
    t["w_dec"] = w_dec
    return t


def write_clt(root: Path, t: T, layer: int) -> Path:
    file = root / "clt" / "width_16k_l0_medium_affine" / f"params_layer_{layer}.safetensors"
    save(file, t)
    return file


def write_gs1_transcoder(root: Path, t: T, layer: int = 3) -> Path:
    folder = (
        root / "gemma-scope-2b-pt-transcoders" / f"layer_{layer}" / "width_16k" / "average_l0_76"
    )
    folder.mkdir(parents=True, exist_ok=True)
    names = {"w_enc": "W_enc", "w_dec": "W_dec"}
    np.savez(folder / "params.npz", **{names.get(k, k): v.numpy() for k, v in t.items()})
    return folder


def sparsify_tensors(d: int, m: int, skip: bool) -> T:
    t = {
        "encoder.weight": rand(m, d),
        "encoder.bias": rand(m, scale=0.1),
        "W_dec": rand(m, d),
        "b_dec": rand(d, scale=0.5),
    }
    if skip:
        t["W_skip"] = rand(d, d)
    return t


def sp_tc_ref(t: T, x: Tensor, transcode: bool = True) -> tuple[Tensor, Tensor]:
    x_in = x if transcode else x - t["b_dec"]
    pre = torch.relu(x_in @ t["encoder.weight"].T + t["encoder.bias"])
    top = pre.topk(SP_K, dim=-1)
    acts = torch.zeros_like(pre).scatter_(-1, top.indices, top.values)
    out = acts @ t["W_dec"] + t["b_dec"]
    if "W_skip" in t:
        out = out + x @ t["W_skip"].mT
    return acts, out


def write_sparsify(root: Path, t: T, hookpoint: str, transcode: bool = True, k: int = SP_K) -> Path:
    folder = root / hookpoint
    save(folder / "sae.safetensors", t)
    cfg = {  # SparseCoderConfig.to_dict() + d_in, as save_to_disk writes it
        "activation": "topk",
        "expansion_factor": 32,
        "normalize_decoder": True,
        "num_latents": len(t["encoder.bias"]),
        "k": k,
        "multi_topk": False,
        "skip_connection": "W_skip" in t,
        "transcode": transcode,
        "d_in": len(t["b_dec"]),
    }
    (folder / "cfg.json").write_text(json.dumps(cfg))
    (root / "config.json").write_text(json.dumps({"model": "EleutherAI/pythia-70m"}))
    return folder
