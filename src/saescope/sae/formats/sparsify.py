"""EleutherAI sparsify: ``<run>/<hookpoint>/{cfg.json, sae.safetensors}`` (``SparseCoder``).

    acts  = TopK_k(ReLU((x - b_dec) @ encoder.weight.T + encoder.bias))   encoder.weight (d_sae, d_in)
    x_hat = acts @ W_dec + b_dec                                          W_dec (d_sae, d_in)

That is saescope's TopK with ``W_enc = encoder.weight.T``. The hookpoint is the folder's name
(``layers.6`` is the output of decoder layer 6: ``layers.6.resid_post``); the run's
``config.json`` one level up names the model. Writing: ``save_sparsify`` (TopK SAEs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import safetensors.torch
import torch

from saescope._files import write_atomic
from saescope.errors import SaescopeError
from saescope.sae.base import SAE
from saescope.sae.config import SAEConfig
from saescope.sae.formats import _common as c

NAME = "sparsify"
CFG, WEIGHTS = "cfg.json", "sae.safetensors"
FMT = "sparsify (cfg.json + sae.safetensors)"


def detect(path: Path) -> bool:
    return path.is_dir() and (path / WEIGHTS).exists()


def _site(path: Path) -> str | None:
    m = re.fullmatch(r"(?:model\.)?(?:layers|h|blocks)\.(\d+)", path.resolve().name)
    return f"layers.{int(m.group(1))}.resid_post" if m else None


def _model(path: Path) -> str | None:
    run = path.resolve().parent / "config.json"
    if not run.is_file():
        return None
    try:
        data = json.loads(run.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # the run's config is a nicety; the SAE itself is complete without it
    return data.get("model") if isinstance(data, dict) else None


def read(path: Path, device: str | torch.device = "cpu") -> SAE:
    cfg_file, file = path / CFG, path / WEIGHTS
    config = c.read_json(cfg_file, FMT)
    d = c.scalar(cfg_file, FMT, config, "d_in", int)
    k = c.scalar(cfg_file, FMT, config, "k", int)
    activation = config.get("activation", "topk")
    if activation != "topk":
        raise c.fail(cfg_file, FMT, f"activation is {activation!r}; saescope reads topk only")
    t = c.read_safetensors(file, FMT)
    # -- transcoders: one place, extended once the transcoder kind exists ----------------------
    if config.get("transcode"):
        raise c.transcoder(cfg_file, FMT, "transcode=true")
    if config.get("skip_connection") or "W_skip" in t:
        raise c.transcoder(file, FMT, "it has a skip connection W_skip")
    enc_w, enc_b, W_dec, b_dec = c.need(
        file, FMT, t, "encoder.weight", "encoder.bias", "W_dec", "b_dec"
    )
    if enc_b.dim() != 1:
        raise c.fail(file, FMT, f"tensor encoder.bias has shape {tuple(enc_b.shape)}, expected 1-D")
    m = len(enc_b)
    expected_m = config.get("num_latents") or d * config.get("expansion_factor", 32)
    if m != expected_m:
        raise c.fail(file, FMT, f"encoder.bias has {m} latents, {CFG} implies {expected_m}")
    c.check_shape(file, FMT, "encoder.weight", enc_w, (m, d), "(d_sae, d_in)")
    c.check_shape(file, FMT, "W_dec", W_dec, (m, d), "(d_sae, d_in)")
    c.check_shape(file, FMT, "b_dec", b_dec, (d,), "(d_in,)")
    prov = c.provenance(NAME, path, [WEIGHTS, CFG], config)
    cfg = SAEConfig(
        d_in=d,
        d_sae=m,
        architecture="topk",
        k=k,
        apply_b_dec_to_input=True,
        dtype=c.dtype_name(file, FMT, enc_w),
        metadata=c.metadata(_model(path), _site(path), prov, hookpoint=path.resolve().name),
    )
    weights = {"W_enc": enc_w.t(), "b_enc": enc_b, "W_dec": W_dec, "b_dec": b_dec}
    return c.build(cfg, weights, file, FMT).to(device)


def save_sparsify(sae: SAE, path: str | Path) -> Path:
    """Write a TopK ``sae`` in sparsify's layout (``cfg.json`` + ``sae.safetensors``) into the
    directory ``path``, which sparsify expects to be named after the hookpoint (``layers.6``).

    sparsify always subtracts ``b_dec`` before encoding; an SAE without a pre-encoder bias is
    written with ``encoder.bias = b_enc + b_dec @ W_enc``, which gives the same latents.
    """
    if sae.cfg.architecture != "topk":
        raise SaescopeError(
            f"sparsify files hold TopK SAEs; this SAE is {sae.cfg.architecture}. Save it with "
            "save_sae (SAELens layout) or save_gemma_scope_2 (JumpReLU) instead"
        )
    assert sae.cfg.k is not None
    with torch.no_grad():
        W_enc = sae.W_enc.detach().cpu()  # (d_in, d_sae)
        b_enc, b_dec = sae.b_enc.detach().cpu(), sae.b_dec.detach().cpu()
        if not sae.cfg.apply_b_dec_to_input:
            b_enc = b_enc + b_dec @ W_enc
        tensors = {
            "encoder.weight": W_enc.t().contiguous(),  # (d_sae, d_in), nn.Linear's orientation
            "encoder.bias": b_enc.contiguous(),
            "W_dec": sae.W_dec.detach().cpu().contiguous(),
            "b_dec": b_dec.contiguous(),
        }
    config = {
        "activation": "topk",
        "expansion_factor": max(1, sae.cfg.d_sae // sae.cfg.d_in),
        "normalize_decoder": True,
        "num_latents": sae.cfg.d_sae,
        "k": sae.cfg.k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": sae.cfg.d_in,
    }
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / WEIGHTS, safetensors.torch.save(tensors))
    write_atomic(root / CFG, json.dumps(config).encode())
    return root
