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


def config_from_dict(data: dict[str, Any]) -> SAEConfig:
    arch = data.get("saescope_architecture") or architecture_for_saelens(data["architecture"])
    if data.get("normalize_activations", "none") not in ("none", None):
        raise SaescopeError(
            f"normalize_activations={data['normalize_activations']!r} is not supported on load; "
            "fold the scale into the weights first"
        )
    meta = dict(data.get("metadata") or {})
    for key in ("sae_lens_version", "sae_lens_training_version", "saescope_version"):
        meta.pop(key, None)
    known = {f.name for f in fields(SAEMetadata)} - {"extra"}
    metadata = SAEMetadata(
        **{k: v for k, v in meta.items() if k in known},
        extra={k: v for k, v in meta.items() if k not in known},
    )
    return SAEConfig(
        d_in=int(data["d_in"]),
        d_sae=int(data["d_sae"]),
        architecture=arch,
        k=data.get("k"),
        apply_b_dec_to_input=bool(data.get("apply_b_dec_to_input", True)),
        dtype=str(data.get("dtype", "float32")).removeprefix("torch."),
        metadata=metadata,
    )


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> SAE:
    """Read an SAE directory written by ``save_sae`` (or by SAELens v6, same layout)."""
    root = Path(path)
    try:
        data = json.loads((root / CFG).read_text())
    except FileNotFoundError as err:
        raise SaescopeError(f"{root} holds no {CFG}: not an SAE directory") from err
    except json.JSONDecodeError as err:
        raise SaescopeError(f"{root / CFG} is corrupt ({err})") from err
    cfg = config_from_dict(data)
    sae = ARCHITECTURES[cfg.architecture](cfg)
    try:
        weights = safetensors.torch.load_file(root / WEIGHTS)
    except FileNotFoundError as err:
        raise SaescopeError(f"{root} holds no {WEIGHTS}") from err
    except Exception as err:  # safetensors' own error types
        raise SaescopeError(f"{root / WEIGHTS} is corrupt or truncated ({err})") from err
    expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        raise SaescopeError(
            f"{root / WEIGHTS} does not match {CFG}: expected tensors {expected}, found {found}"
        )
    sae.load_state_dict(weights)
    return sae.to(device).eval()


def load_log10_density(path: str | Path) -> Tensor | None:
    file = Path(path) / SPARSITY
    return safetensors.torch.load_file(file)["sparsity"] if file.exists() else None
