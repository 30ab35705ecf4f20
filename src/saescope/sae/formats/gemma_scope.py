"""Gemma Scope (Gemma 2: ``params.npz``) and Gemma Scope 2 (Gemma 3: ``config.json`` +
``params.safetensors``), both JumpReLU without a pre-encoder bias (Lieberum et al. 2024):

    pre   = x @ W_enc + b_enc                  W_enc (d_in, d_sae), no b_dec subtraction
    acts  = ReLU(pre) * H(pre - threshold)     threshold (d_sae,)
    x_hat = acts @ W_dec + b_dec               W_dec (d_sae, d_in)

Gemma Scope 2 spells the tensors in lower case (``w_enc`` ...) and names its site as an HF
module path in ``hf_hook_point_in``. Transcoders (both releases) read ``mlp_in`` and predict
``mlp_out``: W_dec (d_sae, d_out), b_dec (d_out,), and Gemma Scope 2's optional
``affine_skip_connection`` A (d_in, d_out) adds ``x @ A`` (saescope's ``W_skip`` is A.T). Writing: ``save_gemma_scope_2`` (JumpReLU and BatchTopK
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
    if path.is_file():
        return _CLT_FILE.fullmatch(path.name) is not None
    return path.is_dir() and (path / PARAMS).exists()


def _jumprelu(
    file: Path, fmt: str, t: dict[str, torch.Tensor], names: tuple[str, ...], transcoder: bool
) -> tuple[int, int, dict[str, torch.Tensor]]:
    """(d_in, d_sae, tensors in saescope names) after checking each shape against d_sae =
    len(b_enc), d_out = len(b_dec) and d_in: d_out for an SAE, the encoder's other side for a
    transcoder (whose input and output widths need not agree)."""
    W_enc, W_dec, b_enc, b_dec, threshold = c.need(file, fmt, t, *names)
    for name, tensor, dim in (
        (names[0], W_enc, 2),
        (names[2], b_enc, 1),
        (names[3], b_dec, 1),
        (names[4], threshold, 1),
    ):
        if tensor.dim() != dim:
            raise c.fail(
                file, fmt, f"tensor {name} has shape {tuple(tensor.shape)}, expected {dim}-D"
            )
    o, m = len(b_dec), len(b_enc)
    d = o
    if transcoder:  # the encoder's side that is not d_sae; a transposed one is caught below
        d = W_enc.shape[0] if W_enc.shape[1] == m else W_enc.shape[1]
    out = "d_out" if transcoder else "d_in"
    c.check_shape(file, fmt, names[0], W_enc, (d, m), "(d_in, d_sae)")
    c.check_shape(file, fmt, names[1], W_dec, (m, o), f"(d_sae, {out})")
    c.check_shape(file, fmt, names[2], b_enc, (m,), "(d_sae,)")
    c.check_shape(file, fmt, names[3], b_dec, (o,), f"({out},)")
    c.check_shape(file, fmt, names[4], threshold, (m,), "(d_sae,)")
    weights = {"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}
    return d, m, {**weights, "threshold": threshold}


def read_1(path: Path, device: str | torch.device = "cpu") -> SAE:
    """A Gemma Scope ``params.npz`` (its directory or the file itself); one under
    ``gemma-scope-2b-pt-transcoders`` is a transcoder ``layers.L.mlp_in`` -> ``layers.L.mlp_out``
    (TransformerLens ``ln2.hook_normalized`` -> ``hook_mlp_out``), without a skip."""
    file = path if path.is_file() else path / NPZ
    fmt = "Gemma Scope (params.npz)"
    if "embedding" in file.parts:
        raise c.fail(file, fmt, "embedding SAEs read the unscaled embeddings: no saescope site")
    t = c.read_npz(file, fmt)
    site, site_out, model = _site_from_path(file)
    transcoder = site_out is not None
    names = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
    d, m, weights = _jumprelu(file, fmt, t, names, transcoder)
    prov = c.provenance(NAME_1, file.parent, [file.name], None)
    cfg = SAEConfig(
        d_in=d,
        d_sae=m,
        architecture="jumprelu",
        apply_b_dec_to_input=False,
        dtype=c.dtype_name(file, fmt, weights["W_enc"]),
        metadata=c.metadata(model, site, prov, site_out),
        d_out=len(weights["b_dec"]) if transcoder else None,
    )
    return c.build(cfg, weights, file, fmt).to(device)


def _site_from_path(file: Path) -> tuple[str | None, str | None, str | None]:
    """(site, site_out, model) from a hub path ``…gemma-scope-2b-pt-res/…/layer_12/…``;
    site_out is set for the transcoder release only."""
    text = "/".join(file.parts)
    layer = re.search(r"layer_(\d+)", text)
    repo = re.search(r"gemma-scope-(\d+b)-(pt|it)-(res|mlp|att|transcoders)(?![\w-])", text)
    model = None
    if repo is not None:
        model = f"gemma-2-{repo.group(1)}" + ("-it" if repo.group(2) == "it" else "")
    if layer is None or repo is None or repo.group(3) == "att":
        return None, None, model
    L = int(layer.group(1))
    if repo.group(3) == "transcoders":
        return f"layers.{L}.mlp_in", f"layers.{L}.mlp_out", model
    return f"layers.{L}.{_KINDS_1[repo.group(3)]}", None, model


def _model_name_2(name: object) -> str | None:
    """``google/gemma-3-270m``-style names spelled as saescope's aliases (``gemma-3-270m``)."""
    if not isinstance(name, str):
        return None
    name = name.removeprefix("google/").replace("-v3", "-3")
    return name.replace("-pt", "") if "270m" in name else name


def read_2(path: Path, device: str | torch.device = "cpu", out_layer: int | None = None) -> SAE:
    """A Gemma Scope 2 folder (``config.json`` + ``params.safetensors``): an SAE, a transcoder
    (``hf_hook_point_out`` another site, optional ``affine_skip_connection``), or one layer of
    a cross-layer transcoder (a 3-D ``w_dec``; also a ``clt/…/params_layer_L.safetensors``
    file), read as the per-layer view for output layer ``out_layer`` (default: its own)."""
    fmt = "Gemma Scope 2 (config.json + params.safetensors)"
    clt_file = path if path.is_file() else None
    folder = path.parent if clt_file else path
    file = clt_file or path / PARAMS
    config: dict[str, Any] = {}
    if clt_file is None or (folder / CONFIG).exists():
        config = c.read_json(folder / CONFIG, fmt)
    if config and config.get("architecture") != "jump_relu":
        raise c.fail(
            folder / CONFIG,
            fmt,
            f"architecture is {config.get('architecture')!r}, expected 'jump_relu'",
        )
    t = c.read_safetensors(file, fmt)
    hook_in, hook_out = config.get("hf_hook_point_in"), config.get("hf_hook_point_out")
    site = c.site_from_hf(hook_in)
    site_out = c.site_from_hf(hook_out) if hook_out not in (None, hook_in) else None
    skip = _affine_skip(folder / CONFIG, file, fmt, config, t)
    clt = "w_dec" in t and t["w_dec"].dim() == 3
    if clt:
        site, site_out, t = _clt_view(file, fmt, t, site, site_out, out_layer)
        if _layer(site) != _layer(site_out):
            skip = None  # a layer's skip maps its input to its own output only
    elif out_layer is not None:
        raise c.fail(
            file,
            fmt,
            f"out_layer={out_layer} names an output layer, but w_dec is 2-D: "
            "only a cross-layer transcoder has more than one",
        )
    transcoder = clt or skip is not None or hook_out not in (None, hook_in)
    transcoder = transcoder or config.get("type") == "transcoder"
    names = ("w_enc", "w_dec", "b_enc", "b_dec", "threshold")
    d, m, weights = _jumprelu(file, fmt, t, names, transcoder)
    o = len(weights["b_dec"])
    if skip is not None:  # stored (d_in, d_out), applied as x @ A; saescope's W_skip is A.T
        c.check_shape(file, fmt, "affine_skip_connection", skip, (d, o), "(d_in, d_out)")
        weights["W_skip"] = skip.t()
    if isinstance(config.get("width"), int) and config["width"] != m:
        raise c.fail(folder / CONFIG, fmt, f"width is {config['width']}, b_enc has {m} latents")
    c.check_sites(folder / CONFIG, fmt, site, site_out)
    # saescope_site / saescope_metadata: written by save_gemma_scope_2, so a round trip keeps
    # the spelling of the site and how the inputs were prepared.
    if config.get("saescope_site"):
        site = c.tl_site(config["saescope_site"]) or site
    raw = config.get("saescope_metadata")
    kept: dict[str, Any] = raw if isinstance(raw, dict) else {}
    files = [file.name] + ([CONFIG] if config else [])
    prov = c.provenance(NAME_2, folder, files, config or None)
    if clt:  # what load_sae reads this view back from (the folder holds every layer's file)
        J, L = _layer(site_out), _layer(site)
        prov["source"] = str(file.resolve()) + (f"?out_layer={J}" if J != L else "")
    model = _model_name_2(config.get("model_name")) or _model_from_path_2(file)
    extra = {"hf_hook_name": hook_in, "hf_hook_name_out": hook_out if transcoder else None}
    if clt:
        extra["clt_view"] = {"in_layer": _layer(site), "out_layer": _layer(site_out)}
    cfg = SAEConfig(
        d_in=d,
        d_sae=m,
        architecture="jumprelu",
        apply_b_dec_to_input=False,
        dtype=c.dtype_name(file, fmt, weights["W_enc"]),
        metadata=_keep(folder / CONFIG, c.metadata(model, site, prov, site_out, **extra), kept),
        d_out=o if transcoder else None,
        skip=skip is not None,
    )
    return c.build(cfg, weights, file, fmt).to(device)


_CLT_FILE = re.compile(r"params_layer_(\d+)\.safetensors")


def _affine_skip(
    cfg_file: Path, file: Path, fmt: str, config: dict[str, Any], t: dict[str, torch.Tensor]
) -> torch.Tensor | None:
    """The ``affine_skip_connection`` tensor, after checking it against ``affine_connection``."""
    skip = t.get("affine_skip_connection")
    said = config.get("affine_connection")
    if said is True and skip is None:
        raise c.fail(
            file,
            fmt,
            f"{cfg_file.name} says affine_connection=true, but the file "
            "holds no affine_skip_connection",
        )
    if said is False and skip is not None:
        raise c.fail(
            file,
            fmt,
            f"it holds affine_skip_connection, but {cfg_file.name} says affine_connection=false",
        )
    if skip is not None and skip.dim() != 2:
        raise c.fail(
            file,
            fmt,
            f"tensor affine_skip_connection has shape {tuple(skip.shape)}, expected (d_in, d_out)",
        )
    return skip


def _layer(site: str | None) -> int | None:
    from saescope._sites import Site

    return Site.parse(site).layer if site else None


def _clt_view(
    file: Path,
    fmt: str,
    t: dict[str, torch.Tensor],
    site: str | None,
    site_out: str | None,
    out_layer: int | None,
) -> tuple[str | None, str | None, dict[str, torch.Tensor]]:
    """One input layer's file of a cross-layer transcoder as a single-layer transcoder.

    ``w_dec`` is (d_sae, n_layers, d_out), indexed by the absolute output layer as
    circuit-tracer's ``load_gemma_scope_2_clt`` reads it (it stacks the per-layer files, so
    every file has all n_layers slots; those before the input layer are unused). The view for
    output layer J takes slot J; ``b_dec`` and the skip belong to the file's own layer, so for
    J != L the bias is zero (the skip is dropped by the caller). A view is one term of the
    CLT's output at layer J, which sums every earlier layer's view: splicing one replaces that
    site with this layer's share alone.
    """
    w_dec = t["w_dec"]
    named = _CLT_FILE.fullmatch(file.name)
    L = int(named.group(1)) if named else _layer(site)
    if L is None:
        raise c.fail(
            file,
            fmt,
            "w_dec is 3-D (a cross-layer transcoder) but neither the file "
            "name (params_layer_L.safetensors) nor hf_hook_point_in names its layer",
        )
    n = w_dec.shape[1]
    J = L if out_layer is None else out_layer
    if not L <= J < n:
        raise c.fail(
            file,
            fmt,
            f"out_layer={J} is not an output layer of input layer {L}: "
            f"w_dec has slots for layers 0..{n - 1}, and a layer writes to itself and "
            "later layers only",
        )
    if L > 0 and w_dec[:, :L].abs().max() > 0:
        raise c.fail(
            file,
            fmt,
            f"w_dec slots 0..{L - 1}, before input layer {L}, are not zero; "
            "expected dim 1 indexed by absolute output layer (circuit-tracer's "
            "reading): is it indexed from the input layer instead?",
        )
    kind_in = site.rsplit(".", 1)[1] if site else "mlp_in"
    kind_out = site_out.rsplit(".", 1)[1] if site_out else "mlp_out"
    view = {**t, "w_dec": w_dec[:, J].contiguous()}
    if J != L:
        view["b_dec"] = torch.zeros_like(t["b_dec"])
    return f"layers.{L}.{kind_in}", f"layers.{J}.{kind_out}", view


def _model_from_path_2(file: Path) -> str | None:
    repo = re.search(r"gemma-scope-2-(\d+m|\d+b)-(pt|it)", "/".join(file.parts))
    return _model_name_2(f"gemma-3-{repo.group(1)}-{repo.group(2)}") if repo else None


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
