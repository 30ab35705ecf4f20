"""EleutherAI sparsify: ``<run>/<hookpoint>/{cfg.json, sae.safetensors}`` (``SparseCoder``).

    acts  = TopK_k(ReLU((x - b_dec) @ encoder.weight.T + encoder.bias))   encoder.weight (d_sae, d_in)
    x_hat = acts @ W_dec + b_dec                                          W_dec (d_sae, d_in)

That is saescope's TopK with ``W_enc = encoder.weight.T``. With ``transcode`` it is a
transcoder from the hooked module's input to its output: no ``b_dec`` shift on the input, the
same widths (``W_dec`` (d_sae, d_in), ``b_dec`` (d_in,)); with ``skip_connection`` it adds
``x @ W_skip.T``, ``W_skip`` (d_out, d_in) as saescope stores it. A skip connection without
``transcode`` keeps the shift: it is folded into ``b_enc`` (``b_enc - W_enc^T b_dec``) and the SAE
read as a transcoder from its site to itself.

The hookpoint is the folder's name (``layers.6`` is decoder layer 6: its output
``layers.6.resid_post``, and for a transcoder its input ``layers.6.resid_pre``; ``layers.6.mlp``
is the MLP: ``mlp_in`` -> ``mlp_out``, except on Gemma 2/3, whose MLP output precedes the
post-FFN norm and so is no saescope site); the run's ``config.json`` one level up names the
model. Writing: ``save_sparsify`` (TopK SAEs).
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


def _sites(path: Path, transcode: bool, model: str | None) -> tuple[str | None, str | None]:
    """(the site read, the site written) of the hookpoint named by the folder."""
    m = re.fullmatch(r"(?:model\.)?(?:layers|h|blocks)\.(\d+)(\.mlp)?", path.resolve().name)
    if m is None:
        return None, None
    L = int(m.group(1))
    if m.group(2) is None:  # the decoder layer: reads resid_pre, writes resid_post
        return (f"layers.{L}.resid_pre" if transcode else None), f"layers.{L}.resid_post"
    if model is not None and re.search(r"gemma-?[23]", model.lower()):
        return (f"layers.{L}.mlp_in" if transcode else None), None
    return (f"layers.{L}.mlp_in" if transcode else None), f"layers.{L}.mlp_out"


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
    transcode = config.get("transcode", False)
    skip = config.get("skip_connection", False)
    for key, value in (("transcode", transcode), ("skip_connection", skip)):
        if not isinstance(value, bool):
            raise c.fail(cfg_file, FMT, f"{key} must be true or false, found {value!r}")
    if skip != ("W_skip" in t):
        raise c.fail(
            file,
            FMT,
            f"{CFG} says skip_connection={str(skip).lower()}, but the file "
            + ("holds no W_skip" if skip else "holds W_skip"),
        )
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
    weights = {"W_enc": enc_w.t(), "b_enc": enc_b, "W_dec": W_dec, "b_dec": b_dec}
    if skip:
        c.check_shape(file, FMT, "W_skip", t["W_skip"], (d, d), "(d_out, d_in)")
        weights["W_skip"] = t["W_skip"]  # applied as x @ W_skip.mT: saescope's orientation
        if not transcode:  # keep sparsify's x - b_dec: fold it into b_enc, in float64
            shift = enc_w.double() @ b_dec.double()  # (d_sae,)
            weights["b_enc"] = (enc_b.double() - shift).to(enc_b.dtype)
    model = _model(path)
    site, site_out = _sites(path, transcode, model)
    if skip and not transcode:
        site = site_out  # an SAE with a skip: from its site to itself
    tc = transcode or skip
    c.check_sites(cfg_file, FMT, site, site_out)
    prov = c.provenance(NAME, path, [WEIGHTS, CFG], config)
    cfg = SAEConfig(
        d_in=d,
        d_sae=m,
        architecture="topk",
        k=k,
        apply_b_dec_to_input=not tc,
        dtype=c.dtype_name(file, FMT, enc_w),
        metadata=c.metadata(
            model,
            site if tc else site_out,
            prov,
            site_out if tc else None,
            hookpoint=path.resolve().name,
        ),
        d_out=d if tc else None,
        skip=skip,
    )
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
