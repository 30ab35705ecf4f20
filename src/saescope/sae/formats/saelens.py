"""SAELens directories (saescope's own format): ``cfg.json`` + ``sae_weights.safetensors``.

v6 (``cfg.json`` with a ``metadata`` object) and pre-6.0 flat configs (``hook_point``,
``activation_fn_str``, ``activation_fn_kwargs.k``, converted as SAELens' own
``handle_pre_6_0_config`` does). Architectures: ``standard`` (ReLU), ``gated``, ``jumprelu``
(BatchTopK and Matryoshka SAEs are saved as jumprelu with a threshold), ``topk``.

    pre = (x - b_dec if apply_b_dec_to_input else x) @ W_enc + b_enc    W_enc (d_in, d_sae)
    x_hat = act(pre) @ W_dec + b_dec                                    W_dec (d_sae, d_in)

An ``expected_average_only_in`` scale saved in ``activation_scaler.json`` is folded into the
weights; per-token normalisations cannot be folded and are refused.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae.base import SAE
from saescope.sae.config import SAEConfig, SAEMetadata
from saescope.sae.formats import _common as c
from saescope.sae.registry import ARCHITECTURES, architecture_for_saelens, split_transcoder_name

NAME = "saelens"
CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SCALER = "activation_scaler.json"


def detect(path: Path) -> bool:
    # sparsify also writes cfg.json; its weights file tells the two apart.
    return path.is_dir() and (path / CFG).exists() and not (path / "sae.safetensors").exists()


def config_from_dict(data: object, source: str | Path = CFG) -> SAEConfig:
    """The ``SAEConfig`` of a parsed cfg.json (v6 keys); every error starts with ``source``."""
    try:
        return _config_from_dict(data)
    except SaescopeError as err:
        raise SaescopeError(f"{source}: {err}") from err


def _config_from_dict(data: object) -> SAEConfig:
    if not isinstance(data, dict):
        raise SaescopeError(
            f"expected a JSON object of SAELens v6 keys, found a {type(data).__name__}"
        )
    missing = [key for key in ("d_in", "d_sae") if key not in data]
    if "architecture" not in data and "saescope_architecture" not in data:
        missing.append("architecture")
    if missing:
        raise SaescopeError(
            f"missing {', '.join(missing)}; expected the keys save_sae or SAELens v6 writes"
        )
    arch = data.get("saescope_architecture") or data["architecture"]
    if not isinstance(arch, str):
        raise SaescopeError(f"architecture must be a string, found {arch!r}")
    # A transcoder is told by its SAELens architecture name (``jumprelu_skip_transcoder``);
    # saescope_architecture, where present, names the activation alone.
    saelens = data.get("architecture", arch)
    transcoder = split_transcoder_name(saelens) if isinstance(saelens, str) else None
    if transcoder is not None and "d_out" not in data:
        raise SaescopeError(f"architecture {saelens!r} is a transcoder's but d_out is missing")
    if transcoder is not None and arch == saelens:
        arch = transcoder[0]
    raw_meta = data.get("metadata") or {}
    if not isinstance(raw_meta, dict):
        raise SaescopeError(f"metadata must be a JSON object, found {raw_meta!r}")
    meta = dict(raw_meta)
    for key in ("sae_lens_version", "sae_lens_training_version", "saescope_version"):
        meta.pop(key, None)
    known = {f.name for f in fields(SAEMetadata)} - {"extra"}
    extra = meta.pop("extra", {}) if isinstance(meta.get("extra"), dict) else {}
    metadata = SAEMetadata(
        **{k: v for k, v in meta.items() if k in known},
        extra={**extra, **{k: v for k, v in meta.items() if k not in known}},
    )
    dtype = data.get("dtype", "float32")
    widths = data.get("matryoshka_widths")
    return SAEConfig(
        # No int()/bool()/str() coercion: SAEConfig refuses a 640.9 that int() would truncate.
        d_in=data["d_in"],
        d_sae=data["d_sae"],
        architecture=architecture_for_saelens(arch),
        k=data.get("k"),
        matryoshka_widths=tuple(widths) if isinstance(widths, list) else widths,
        # SAELens keeps apply_b_dec_to_input's default in a transcoder's cfg.json and ignores it.
        apply_b_dec_to_input=(
            False if transcoder is not None else data.get("apply_b_dec_to_input", True)
        ),
        dtype=dtype.removeprefix("torch.") if isinstance(dtype, str) else dtype,
        metadata=metadata,
        d_out=data["d_out"] if transcoder is not None else None,
        skip=transcoder is not None and transcoder[1],
    )


_METADATA_KEYS = (
    "model_name",
    "hook_name",
    "hook_head_index",
    "context_size",
    "prepend_bos",
    "dataset_path",
    "neuronpedia_id",
    "hook_name_out",
)


def from_pre_6(data: dict[str, Any]) -> dict[str, Any]:
    """A pre-6.0 flat config in v6 keys (SAELens' ``handle_pre_6_0_config``)."""
    renames = {"hook_point": "hook_name", "activation_fn_str": "activation_fn"}
    new = {renames.get(k, k): v for k, v in data.items()}
    arch = new.get("architecture", "standard")
    act = new.get("activation_fn", "relu")
    kwargs = new.get("activation_fn_kwargs") or {}
    if act == "topk" and isinstance(kwargs, dict) and kwargs.get("k") is not None:
        arch, new["k"] = "topk", kwargs["k"]
    elif arch == "standard" and act != "relu":
        raise SaescopeError(f"activation_fn {act!r} is not supported; expected relu or topk")
    norm = new.get("normalize_activations")
    if isinstance(norm, bool):  # pre-6 spelling
        new["normalize_activations"] = "expected_average_only_in" if norm else "none"
    out: dict[str, Any] = {
        k: new[k] for k in ("d_in", "d_sae", "dtype", "apply_b_dec_to_input", "k") if k in new
    }
    out["architecture"] = arch
    out["normalize_activations"] = new.get("normalize_activations") or "none"
    out["metadata"] = {k: new[k] for k in _METADATA_KEYS if new.get(k) is not None}
    return out


def _is_saescope(data: dict[str, Any]) -> bool:
    return "saescope_architecture" in data or "saescope_version" in (data.get("metadata") or {})


def read(path: Path, device: str | torch.device = "cpu") -> SAE:
    """Read an SAE directory written by ``save_sae`` or by SAELens (v6 or pre-6.0)."""
    root = Path(path)
    if not (root / CFG).exists():
        raise SaescopeError(f"{root} holds no {CFG}: not an SAE directory")
    try:
        original = json.loads((root / CFG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SaescopeError(f"{root / CFG} is unreadable or not JSON ({err})") from err
    if not isinstance(original, dict):
        config_from_dict(original, root / CFG)  # raises, naming what was found
    data = original
    if "metadata" not in data and "saescope_architecture" not in data:
        try:
            data = from_pre_6(data)
        except SaescopeError as err:
            raise SaescopeError(f"{root / CFG}: {err}") from err
    arch = data.get("architecture")
    # -- transcoders: read by architecture name (``split_transcoder_name``); a cross-layer
    # transcoder has no single-layer kind here.
    if arch == "clt":
        raise c.transcoder(
            root / CFG,
            "a SAELens directory",
            f"architecture {arch!r}",
            "a cross-layer transcoder writes every later layer at once; load one layer of it "
            "(Gemma Scope 2 clt files are read as per-layer views)",
        )
    if data.get("reshape_activations", "none") not in ("none", None):
        raise c.fail(
            root / CFG,
            "a SAELens directory",
            f"reshape_activations={data['reshape_activations']!r} (an attention hook_z SAE) has "
            "no saescope site",
        )
    if data.get("rescale_acts_by_decoder_norm"):
        raise c.fail(
            root / CFG,
            "a SAELens directory",
            "rescale_acts_by_decoder_norm=true is not supported; expected false",
        )
    scale = _input_scale(root, data)
    cfg = config_from_dict(
        {**data, "normalize_activations": "none"} if scale is not None else data, root / CFG
    )
    if not _is_saescope(original):
        extra = {
            **cfg.metadata.extra,
            "provenance": c.provenance(NAME, root, [WEIGHTS, CFG], original),
        }
        cfg = _with_extra(cfg, extra)
    sae = ARCHITECTURES[cfg.architecture](cfg)
    if not (root / WEIGHTS).exists():
        raise SaescopeError(f"{root} holds no {WEIGHTS}")
    weights = c.read_safetensors(root / WEIGHTS, "a SAELens directory")
    check_weights(root / WEIGHTS, weights, sae.state_dict())
    sae.load_state_dict(weights)
    if scale is not None:
        sae.fold_input_scale_(scale)
    return sae.to(device).eval()


def _with_extra(cfg: SAEConfig, extra: dict[str, Any]) -> SAEConfig:
    return replace(cfg, metadata=replace(cfg.metadata, extra=extra))


def _input_scale(root: Path, data: dict[str, Any]) -> float | None:
    """The ``expected_average_only_in`` factor to fold (the SAE saw ``x * scale``), or None."""
    norm = data.get("normalize_activations", "none")
    if norm in ("none", None):
        return None
    if norm == "expected_average_only_in" and (root / SCALER).exists():
        saved = c.read_json(root / SCALER, "a SAELens directory")
        return float(c.scalar(root / SCALER, "a SAELens directory", saved, "scaling_factor"))
    raise c.fail(
        root / CFG,
        "a SAELens directory",
        f"normalize_activations={norm!r} cannot be folded into the weights (only "
        f"expected_average_only_in with its {SCALER}); fold the scale first",
    )


def check_weights(file: Path, weights: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    """Refuse tensors missing, extra, of the wrong shape or dtype, or holding NaN/inf."""
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise SaescopeError(
            f"{file} does not match {CFG}: missing tensors {missing}, unexpected tensors {extra}; "
            "was it written for another architecture?"
        )
    for name, want in expected.items():
        if weights[name].shape != want.shape:
            transposed = weights[name].dim() == 2 and weights[name].shape == want.shape[::-1]
            raise SaescopeError(
                f"{file} does not match {CFG}: tensor {name} has shape "
                f"{tuple(weights[name].shape)}, expected {tuple(want.shape)} for "
                f"d_in/d_sae in {CFG}" + ("; it looks transposed" if transposed else "")
            )
        if not weights[name].is_floating_point():
            raise SaescopeError(
                f"{file}: tensor {name} has dtype {weights[name].dtype}, expected a float dtype"
            )
    for name, tensor in weights.items():
        bad = ~torch.isfinite(tensor)
        if bad.any():
            first = [int(i) for i in bad.nonzero()[0]]
            raise SaescopeError(
                f"{file}: tensor {name} holds {int(bad.sum())} NaN/inf values (first at {first}); "
                "the training run diverged or the file is damaged: retrain or restore it"
            )
