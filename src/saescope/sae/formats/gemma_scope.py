"""Gemma Scope (Gemma 2: ``params.npz``) and Gemma Scope 2 (Gemma 3: ``config.json`` +
``params.safetensors``), both JumpReLU without a pre-encoder bias (Lieberum et al. 2024):

    pre   = x @ W_enc + b_enc                  W_enc (d_in, d_sae), no b_dec subtraction
    acts  = ReLU(pre) * H(pre - threshold)     threshold (d_sae,)
    x_hat = acts @ W_dec + b_dec               W_dec (d_sae, d_in)

Gemma Scope 2 spells the tensors in lower case (``w_enc`` ...) and names its site as an HF
module path in ``hf_hook_point_in``. Writing: ``save_gemma_scope_2`` (JumpReLU and BatchTopK
SAEs; a pre-encoder bias is folded into ``b_enc``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from saescope._files import write_atomic
from saescope.errors import SaescopeError
from saescope.sae.base import SAE
from saescope.sae.config import SAEConfig, SAEMetadata
from saescope.sae.formats import _common as c

NAME_1, NAME_2 = "gemma_scope", "gemma_scope_2"
NPZ = "params.npz"
CONFIG, PARAMS = "config.json", "params.safetensors"
_KINDS_1 = {"res": "resid_post", "mlp": "mlp_out"}  # att SAEs read the per-head z: no site


def detect_1(path: Path) -> bool:
    return (path / NPZ).is_file() or (path.is_file() and path.name == NPZ)


def detect_2(path: Path) -> bool:
    return path.is_dir() and (path / PARAMS).exists()


def _jumprelu(
    file: Path, fmt: str, t: dict[str, torch.Tensor], names: tuple[str, ...]
) -> tuple[int, int, dict[str, torch.Tensor]]:
    """(d_in, d_sae, tensors in saescope names) after checking each shape against d_in = len(b_dec)
    and d_sae = len(b_enc)."""
    W_enc, W_dec, b_enc, b_dec, threshold = c.need(file, fmt, t, *names)
    for name, bias in ((names[2], b_enc), (names[3], b_dec), (names[4], threshold)):
        if bias.dim() != 1:
            raise c.fail(file, fmt, f"tensor {name} has shape {tuple(bias.shape)}, expected 1-D")
    d, m = len(b_dec), len(b_enc)
    c.check_shape(file, fmt, names[0], W_enc, (d, m), "(d_in, d_sae)")
    c.check_shape(file, fmt, names[1], W_dec, (m, d), "(d_sae, d_in)")
    for name, bias, want in ((names[2], b_enc, m), (names[3], b_dec, d), (names[4], threshold, m)):
        c.check_shape(file, fmt, name, bias, (want,), "(d_in,)" if want == d else "(d_sae,)")
    weights = {"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}
    return d, m, {**weights, "threshold": threshold}


def read_1(path: Path, device: str | torch.device = "cpu") -> SAE:
    """A Gemma Scope ``params.npz`` (its directory or the file itself)."""
    file = path if path.is_file() else path / NPZ
    fmt = "Gemma Scope (params.npz)"
    if "embedding" in file.parts:
        raise c.fail(file, fmt, "embedding SAEs read the unscaled embeddings: no saescope site")
    t = c.read_npz(file, fmt)
    d, m, weights = _jumprelu(file, fmt, t, ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"))
    site, model = _site_from_path(file)
    prov = c.provenance(NAME_1, file.parent, [file.name], None)
    cfg = SAEConfig(
        d_in=d,
        d_sae=m,
        architecture="jumprelu",
        apply_b_dec_to_input=False,
        dtype=c.dtype_name(file, fmt, weights["W_enc"]),
        metadata=c.metadata(model, site, prov),
    )
    return c.build(cfg, weights, file, fmt).to(device)


def _site_from_path(file: Path) -> tuple[str | None, str | None]:
    """(site, model) from a hub path ``…gemma-scope-2b-pt-res/…/layer_12/width_16k/…``."""
    text = "/".join(file.parts)
    layer = re.search(r"layer_(\d+)", text)
    repo = re.search(r"gemma-scope-(\d+b)-(pt|it)-(res|mlp|att)", text)
    if layer is None or repo is None or repo.group(3) not in _KINDS_1:
        return None, f"gemma-2-{repo.group(1)}" if repo else None
    suffix = "-it" if repo.group(2) == "it" else ""
    return (
        f"layers.{int(layer.group(1))}.{_KINDS_1[repo.group(3)]}",
        f"gemma-2-{repo.group(1)}{suffix}",
    )


def _model_name_2(name: object) -> str | None:
    """``google/gemma-3-270m``-style names spelled as saescope's aliases (``gemma-3-270m``)."""
    if not isinstance(name, str):
        return None
    name = name.removeprefix("google/").replace("-v3", "-3")
    return name.replace("-pt", "") if "270m" in name else name


def read_2(path: Path, device: str | torch.device = "cpu") -> SAE:
    """A Gemma Scope 2 folder: ``config.json`` + ``params.safetensors``."""
    fmt = "Gemma Scope 2 (config.json + params.safetensors)"
    config = c.read_json(path / CONFIG, fmt)
    file = path / PARAMS
    if config.get("architecture") != "jump_relu":
        raise c.fail(
            path / CONFIG,
            fmt,
            f"architecture is {config.get('architecture')!r}, expected 'jump_relu'",
        )
    t = c.read_safetensors(file, fmt)
    # -- transcoders: one place, extended once the transcoder kind exists ----------------------
    hook_in, hook_out = config.get("hf_hook_point_in"), config.get("hf_hook_point_out")
    if hook_out not in (None, hook_in):
        raise c.transcoder(path / CONFIG, fmt, f"hf_hook_point_out={hook_out!r}")
    if "affine_skip_connection" in t:
        raise c.transcoder(file, fmt, "it holds affine_skip_connection")
    if "w_dec" in t and t["w_dec"].dim() == 3:
        raise c.transcoder(file, fmt, "w_dec is 3-D: a cross-layer transcoder")
    d, m, weights = _jumprelu(file, fmt, t, ("w_enc", "w_dec", "b_enc", "b_dec", "threshold"))
    if isinstance(config.get("width"), int) and config["width"] != m:
        raise c.fail(path / CONFIG, fmt, f"width is {config['width']}, b_enc has {m} latents")
    # saescope_site / saescope_metadata: written by save_gemma_scope_2, so a round trip keeps
    # the spelling of the site and how the inputs were prepared.
    site = config.get("saescope_site") or c.site_from_hf(hook_in)
    if site is not None:
        site = c.tl_site(site) or c.site_from_hf(hook_in)
    raw = config.get("saescope_metadata")
    kept: dict[str, Any] = raw if isinstance(raw, dict) else {}
    prov = c.provenance(NAME_2, path, [PARAMS, CONFIG], config)
    cfg = SAEConfig(
        d_in=d,
        d_sae=m,
        architecture="jumprelu",
        apply_b_dec_to_input=False,
        dtype=c.dtype_name(file, fmt, weights["W_enc"]),
        metadata=_keep(
            path / CONFIG,
            c.metadata(_model_name_2(config.get("model_name")), site, prov, hf_hook_name=hook_in),
            kept,
        ),
    )
    return c.build(cfg, weights, file, fmt).to(device)


def _keep(file: Path, meta: SAEMetadata, kept: dict[str, Any]) -> SAEMetadata:
    """``meta`` with what saescope wrote beside it restored (the model's name as spelled, the
    special-token policy, ...); this read's provenance stays."""
    names = {f.name for f in fields(SAEMetadata)} - {"extra", "site", "hook_name"}
    raw = kept.get("extra")
    extra: dict[str, Any] = raw if isinstance(raw, dict) else {}
    restored = {k: kept[k] for k in names if k in kept}
    try:
        return replace(meta, **restored, extra={**extra, **meta.extra})
    except SaescopeError as err:
        raise SaescopeError(f"{file}: saescope_metadata: {err}") from err


def save_gemma_scope_2(sae: SAE, path: str | Path) -> Path:
    """Write ``sae`` as a Gemma Scope 2 folder (``config.json`` + ``params.safetensors``).

    JumpReLU SAEs are written as they are; BatchTopK SAEs as their inference form (the learned
    threshold). A pre-encoder bias is folded: ``b_enc - b_dec @ W_enc``, so
    ``x @ W_enc + b_enc'`` equals ``(x - b_dec) @ W_enc + b_enc``. The site comes from the
    SAE's metadata (written as the Gemma 3 module path).
    """
    from saescope.sae.site import sae_site

    arch = sae.cfg.architecture
    if arch not in ("jumprelu", "batchtopk"):
        raise SaescopeError(
            f"Gemma Scope 2 files hold JumpReLU SAEs; this SAE is {arch}. Train a jumprelu or "
            "batchtopk SAE, or save it with save_sae (SAELens layout) instead"
        )
    site = sae_site(sae)
    meta = sae.cfg.metadata
    with torch.no_grad():
        W_enc = sae.W_enc.detach().float().cpu()  # (d_in, d_sae)
        b_dec = sae.b_dec.detach().float().cpu()
        b_enc = sae.b_enc.detach().float().cpu()
        if sae.cfg.apply_b_dec_to_input:  # folded in float64: one rounding, not two
            b_enc = (b_enc.double() - b_dec.double() @ W_enc.double()).float()
        tensors = {
            "w_enc": W_enc,
            "w_dec": sae.W_dec.detach().float().cpu(),
            "b_enc": b_enc,
            "b_dec": b_dec,
            "threshold": sae.state_dict()["threshold"].float().cpu(),
        }
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    write_atomic(root / PARAMS, safetensors.torch.save(tensors))
    config = {
        "architecture": "jump_relu",
        "model_name": sae.cfg.metadata.model_name,
        "hf_hook_point_in": c.hf_from_site(site),
        "width": sae.cfg.d_sae,
        "type": "sae",
        "saescope_site": site,
        "saescope_metadata": {
            **asdict(meta),
            "extra": {k: v for k, v in meta.extra.items() if k != "provenance"},
        },
    }
    write_atomic(root / CONFIG, json.dumps(config, indent=1).encode())
    return root
