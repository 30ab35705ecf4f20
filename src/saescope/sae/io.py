"""Save SAEs as SAELens v6 directories: ``cfg.json`` + ``sae_weights.safetensors``; load any format.

``sparsity.safetensors`` (key ``sparsity``: log10 firing density per latent) is written when the
densities are known. Reading lives in ``saescope.sae.formats`` (``saelens.py`` for this layout).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from saescope import __version__
from saescope._files import write_atomic
from saescope.sae.base import SAE
from saescope.sae.registry import transcoder_name

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SPARSITY = "sparsity.safetensors"


def sae_cfg_dict(sae: SAE) -> dict[str, Any]:
    """The cfg.json contents: SAELens v6 keys, with saescope's architecture name kept too."""
    cfg = sae.cfg
    meta = asdict(cfg.metadata)
    extra = meta.pop("extra")
    if not cfg.is_transcoder:  # SAELens reads hook_name_out as "this is a transcoder"
        for key in ("hook_name_out", "site_out"):
            if meta[key] is None:
                del meta[key]
    name = (
        transcoder_name(cfg.architecture, cfg.skip) if cfg.is_transcoder else type(sae).saelens_name
    )
    out: dict[str, Any] = {
        "architecture": name,
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
    if cfg.d_out is not None:
        out["d_out"] = cfg.d_out
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


def load_sae(
    path: str | Path, device: str | torch.device = "cpu", format: str | None = None
) -> SAE:
    """Read an SAE in any format saescope reads (``saescope.sae.formats.load_sae``; a directory
    written by ``save_sae`` or SAELens v6 is one of them).

    Refuses, naming the file: a config that is not a JSON object of valid fields, and weights
    that are missing, truncated, of the wrong shapes or dtype, or not finite.
    """
    from saescope.sae.formats import load_sae as load

    return load(path, format=format, device=device)


def load_log10_density(path: str | Path) -> Tensor | None:
    file = Path(path) / SPARSITY
    return safetensors.torch.load_file(file)["sparsity"] if file.exists() else None
