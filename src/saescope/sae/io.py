"""Save and load SAEs as SAELens v6 directories: ``cfg.json`` + ``sae_weights.safetensors``.

``sparsity.safetensors`` (key ``sparsity``: log10 firing density per latent) is written when the
densities are known. Loading never unpickles.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from saescope import __version__
from saescope._files import write_atomic
from saescope.errors import SaescopeError
from saescope.sae.base import SAE
from saescope.sae.config import SAEConfig, SAEMetadata
from saescope.sae.registry import ARCHITECTURES, architecture_for_saelens

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SPARSITY = "sparsity.safetensors"


def sae_cfg_dict(sae: SAE) -> dict[str, Any]:
    """The cfg.json contents: SAELens v6 keys, with saescope's architecture name kept too."""
    cfg = sae.cfg
    meta = asdict(cfg.metadata)
    extra = meta.pop("extra")
    out: dict[str, Any] = {
        "architecture": type(sae).saelens_name,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": cfg.dtype,
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",  # any training-time scale is folded into the weights
        "reshape_activations": "none",
        # sae_lens_version marks the v6 layout (SAELens reads older layouts differently).
        "metadata": {**meta, **extra, "sae_lens_version": "6.0.0", "saescope_version": __version__},
    }
    if cfg.k is not None:
        out["k"] = cfg.k
    if cfg.matryoshka_widths is not None:  # SAELens's JumpReLU config ignores the key
        out["matryoshka_widths"] = list(cfg.matryoshka_widths)
    out["saescope_architecture"] = cfg.architecture
    return out


def save_sae(sae: SAE, path: str | Path, log10_density: Tensor | None = None) -> Path:
    """Write ``sae`` to the directory ``path`` (created); files are replaced atomically."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in sae.state_dict().items()}
    write_atomic(root / WEIGHTS, safetensors.torch.save(weights))
    if log10_density is not None:
        sparsity = {"sparsity": log10_density.detach().float().cpu().contiguous()}
        write_atomic(root / SPARSITY, safetensors.torch.save(sparsity))
    write_atomic(root / CFG, json.dumps(sae_cfg_dict(sae), indent=1).encode())
    return root


def config_from_dict(data: object, source: str | Path = CFG) -> SAEConfig:
    """The ``SAEConfig`` of a parsed cfg.json; every error starts with ``source`` (the file)."""
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
    if data.get("normalize_activations", "none") not in ("none", None):
        raise SaescopeError(
            f"normalize_activations={data['normalize_activations']!r} is not supported on load; "
            "fold the scale into the weights first"
        )
    raw_meta = data.get("metadata") or {}
    if not isinstance(raw_meta, dict):
        raise SaescopeError(f"metadata must be a JSON object, found {raw_meta!r}")
    meta = dict(raw_meta)
    for key in ("sae_lens_version", "sae_lens_training_version", "saescope_version"):
        meta.pop(key, None)
    known = {f.name for f in fields(SAEMetadata)} - {"extra"}
    metadata = SAEMetadata(
        **{k: v for k, v in meta.items() if k in known},
        extra={k: v for k, v in meta.items() if k not in known},
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
        apply_b_dec_to_input=data.get("apply_b_dec_to_input", True),
        dtype=dtype.removeprefix("torch.") if isinstance(dtype, str) else dtype,
        metadata=metadata,
    )


def _read_cfg(root: Path) -> object:
    try:
        return json.loads((root / CFG).read_text())
    except FileNotFoundError as err:
        raise SaescopeError(f"{root} holds no {CFG}: not an SAE directory") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SaescopeError(f"{root / CFG} is unreadable or not JSON ({err})") from err


def _check_weights(file: Path, weights: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    """Refuse tensors missing, extra, of the wrong shape, or holding NaN/inf."""
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise SaescopeError(
            f"{file} does not match {CFG}: missing tensors {missing}, unexpected tensors {extra}; "
            "was it written for another architecture?"
        )
    for name, want in expected.items():
        if weights[name].shape != want.shape:
            raise SaescopeError(
                f"{file} does not match {CFG}: tensor {name} has shape "
                f"{tuple(weights[name].shape)}, expected {tuple(want.shape)} for "
                f"d_in/d_sae in {CFG}"
            )
    for name, tensor in weights.items():
        bad = ~torch.isfinite(tensor)
        if bad.any():
            first = [int(i) for i in bad.nonzero()[0]]
            raise SaescopeError(
                f"{file}: tensor {name} holds {int(bad.sum())} NaN/inf values (first at {first}); "
                "the training run diverged or the file is damaged: retrain or restore it"
            )


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> SAE:
    """Read an SAE directory written by ``save_sae`` (or by SAELens v6, same layout).

    Refuses, naming the file: a cfg.json that is not a JSON object of valid fields, and
    weights that are missing, truncated, of the wrong shapes, or not finite.
    """
    root = Path(path)
    cfg = config_from_dict(_read_cfg(root), root / CFG)
    sae = ARCHITECTURES[cfg.architecture](cfg)
    try:
        weights = safetensors.torch.load_file(root / WEIGHTS)
    except FileNotFoundError as err:
        raise SaescopeError(f"{root} holds no {WEIGHTS}") from err
    except Exception as err:  # safetensors' own error types
        raise SaescopeError(f"{root / WEIGHTS} is corrupt or truncated ({err})") from err
    _check_weights(root / WEIGHTS, weights, sae.state_dict())
    sae.load_state_dict(weights)
    return sae.to(device).eval()


def load_log10_density(path: str | Path) -> Tensor | None:
    file = Path(path) / SPARSITY
    return safetensors.torch.load_file(file)["sparsity"] if file.exists() else None
