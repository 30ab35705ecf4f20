"""Llama Scope (He et al. 2024, OpenMOSS): ``hyperparams.json`` + ``checkpoints/final.safetensors``.

Trained on inputs scaled to norm sqrt(d): ``c = sqrt(d_model) / dataset_average_activation_norm.in``,

    pre   = (c x) @ encoder.weight.T + encoder.bias      encoder.weight (d_sae, d_in)
    acts  = pre * (pre > jump_relu_threshold)            one scalar threshold
    x_hat = (acts @ decoder.weight.T + decoder.bias) / c decoder.weight (d_in, d_sae)

The scale is folded into the weights (``W_enc = c encoder.weight.T``, ``W_dec, b_dec / c``), so the
SAE reads raw activations; pre-activations, and so the threshold, are unchanged. As SAELens does,
the published decoder rows are taken as they are (``sparsity_include_decoder_norm`` is not applied).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from saescope.sae.base import SAE
from saescope.sae.config import SAEConfig
from saescope.sae.formats import _common as c

NAME = "llama_scope"
HYPER, WEIGHTS = "hyperparams.json", "checkpoints/final.safetensors"
FMT = "Llama Scope (hyperparams.json + checkpoints/final.safetensors)"


def detect(path: Path) -> bool:
    return path.is_dir() and (path / HYPER).exists()


def read(path: Path, device: str | torch.device = "cpu") -> SAE:
    hp_file, file = path / HYPER, path / WEIGHTS
    hp = c.read_json(hp_file, FMT)
    d = c.scalar(hp_file, FMT, hp, "d_model", int)
    m = c.scalar(hp_file, FMT, hp, "d_sae", int)
    threshold = float(c.scalar(hp_file, FMT, hp, "jump_relu_threshold"))
    # Llama Scope's transcoders (the LXTC sets) are refused: their output is normalised by
    # dataset_average_activation_norm.out, and no primary source saescope could check (SAELens
    # does not read them) says how that scale enters the decoder; a guess would load silently
    # wrong outputs.
    hook_in, hook_out = hp.get("hook_point_in"), hp.get("hook_point_out")
    if hook_out not in (None, hook_in):
        raise c.transcoder(
            hp_file,
            FMT,
            f"hook_point_out={hook_out!r} differs from hook_point_in",
            "how dataset_average_activation_norm.out scales its output is not confirmed by a "
            "reference implementation; convert it to a SAELens transcoder directory with the "
            "output scale folded into W_dec and b_dec",
        )
    if hp.get("act_fn", "jumprelu") != "jumprelu":
        raise c.fail(hp_file, FMT, f"act_fn is {hp.get('act_fn')!r}; expected 'jumprelu'")
    norm_mode = hp.get("norm_activation", "dataset-wise")
    if norm_mode not in ("dataset-wise", "inference", None):
        raise c.fail(
            hp_file, FMT, f"norm_activation={norm_mode!r} cannot be folded into the weights"
        )
    scale = 1.0
    if norm_mode == "dataset-wise":
        norms = hp.get("dataset_average_activation_norm")
        if not isinstance(norms, dict):
            raise c.fail(
                hp_file,
                FMT,
                "norm_activation is dataset-wise but dataset_average_activation_norm is missing",
            )
        norm_in = float(c.scalar(hp_file, FMT, norms, "in"))
        if norm_in <= 0:
            raise c.fail(
                hp_file, FMT, f"dataset_average_activation_norm.in is {norm_in}, expected > 0"
            )
        scale = math.sqrt(d) / norm_in
    t = c.read_safetensors(file, FMT)
    enc_w, enc_b, dec_w, dec_b = c.need(
        file, FMT, t, "encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"
    )
    c.check_shape(file, FMT, "encoder.weight", enc_w, (m, d), "(d_sae, d_in)")
    c.check_shape(file, FMT, "encoder.bias", enc_b, (m,), "(d_sae,)")
    c.check_shape(file, FMT, "decoder.weight", dec_w, (d, m), "(d_in, d_sae)")
    c.check_shape(file, FMT, "decoder.bias", dec_b, (d,), "(d_in,)")
    dtype = c.dtype_name(file, FMT, enc_w)
    weights = {  # folded in float64, then cast to the file's dtype by build
        "W_enc": enc_w.double().t() * scale,
        "b_enc": enc_b.double(),
        "W_dec": dec_w.double().t() / scale,
        "b_dec": dec_b.double() / scale,
        "threshold": torch.full((m,), threshold, dtype=torch.float64),
    }
    prov = c.provenance(NAME, path, [WEIGHTS, HYPER], hp)
    # With a pre-encoder bias, (c x - b) W = (x - b / c) (c W): the folded b_dec / c centres it.
    cfg = SAEConfig(
        d_in=d,
        d_sae=m,
        architecture="jumprelu",
        apply_b_dec_to_input=bool(hp.get("apply_decoder_bias_to_pre_encoder", False)),
        dtype=dtype,
        metadata=c.metadata(
            hp.get("model_name"), c.tl_site(hook_in), prov, input_scale_folded=scale
        ),
    )
    return c.build(cfg, weights, file, FMT).to(device)
