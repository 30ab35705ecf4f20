"""What every reader shares: reading files safely, checking shapes against d_in and d_sae, and
building the SAE with its provenance.

Orientation is never taken from a tensor's name: each reader states the shape a tensor must have
in its format (``(d_in, d_sae)`` or ``(d_sae, d_in)``, with d_in from the config or the decoder
bias and d_sae from the encoder bias), and a tensor of the transposed shape is refused with that
said. Where d_in == d_sae both orientations have the same shape; only the format's formula
(tested against the published reference in tests/sae/formats) decides there.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae.base import SAE
from saescope.sae.config import DTYPES, SAEConfig
from saescope.sae.registry import ARCHITECTURES


def fail(file: Path, fmt: str, what: str) -> SaescopeError:
    """The error for a file that looked like ``fmt`` but ``what`` did not match."""
    return SaescopeError(f"{file}: read as {fmt}, but {what}")


def transcoder(file: Path, fmt: str, why: str, reason: str) -> SaescopeError:
    """The error for a transcoder layout saescope does not read (``reason`` says why)."""
    return fail(file, fmt, f"it is a transcoder ({why}), which saescope does not read: {reason}")


def check_sites(file: Path, fmt: str, site: str | None, site_out: str | None) -> None:
    """Refuse a transcoder whose output site comes before its input site in the forward pass
    (splicing it would write a site the model has already passed); unknown sites pass."""
    from saescope._sites import Site

    if site is None or site_out is None:
        return
    if Site.parse(site_out) < Site.parse(site):
        raise fail(
            file,
            fmt,
            f"its output site {site_out} comes before its input site {site} in the forward "
            "pass; a transcoder predicts a later site from an earlier one (are the hooks "
            "swapped?)",
        )


def read_json(file: Path, fmt: str) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError as err:
        raise fail(file, fmt, "the file does not exist") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail(file, fmt, f"it is unreadable or not JSON ({err})") from err
    if not isinstance(data, dict):
        raise fail(file, fmt, f"expected a JSON object, found a {type(data).__name__}")
    return data


def read_safetensors(file: Path, fmt: str) -> dict[str, Tensor]:
    try:
        return safetensors.torch.load_file(file)
    except FileNotFoundError as err:
        raise fail(file, fmt, "the file does not exist") from err
    except Exception as err:  # safetensors' own error types
        raise fail(file, fmt, f"it is corrupt or truncated ({err})") from err


def read_npz(file: Path, fmt: str) -> dict[str, Tensor]:
    """A numpy archive of arrays; ``allow_pickle=False``, so an object array is refused."""
    try:
        with np.load(file, allow_pickle=False) as npz:
            return {name: torch.from_numpy(np.array(npz[name])) for name in npz.files}
    except FileNotFoundError as err:
        raise fail(file, fmt, "the file does not exist") from err
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise fail(file, fmt, f"it is corrupt, truncated or holds pickled objects ({err})") from err


def read_state_dict(file: Path, fmt: str) -> dict[str, Tensor]:
    """A ``torch.save``d state dict, read with ``weights_only=True``: anything but tensors and
    plain containers is refused by torch's restricted unpickler, never executed."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise fail(file, fmt, "the file does not exist") from err
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise fail(
            file,
            fmt,
            f"it is not a plain state dict of tensors (refused, not executed: {first}); "
            "save it with torch.save(module.state_dict())",
        ) from err
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise fail(file, fmt, "it holds no state dict (a mapping of names to tensors)")
    return state


def need(file: Path, fmt: str, tensors: dict[str, Tensor], *names: str) -> list[Tensor]:
    missing = [n for n in names if n not in tensors]
    if missing:
        raise fail(
            file,
            fmt,
            f"tensors {missing} are missing (found {sorted(tensors)}); is it another format?",
        )
    return [tensors[n] for n in names]


def check_shape(
    file: Path, fmt: str, name: str, tensor: Tensor, shape: tuple[int, ...], dims: str
) -> None:
    """Refuse ``tensor`` unless it has ``shape`` (``dims`` names it, e.g. ``(d_in, d_sae)``)."""
    if not tensor.is_floating_point():
        raise fail(file, fmt, f"tensor {name} has dtype {tensor.dtype}, expected a float dtype")
    if tuple(tensor.shape) == shape:
        return
    hint = ""
    if len(shape) == 2 and tuple(tensor.shape) == shape[::-1]:
        hint = "; it looks transposed (stored in another library's orientation?)"
    raise fail(
        file,
        fmt,
        f"tensor {name} has shape {tuple(tensor.shape)}, expected {dims} = {shape}{hint}",
    )


def dtype_name(file: Path, fmt: str, tensor: Tensor) -> str:
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise fail(file, fmt, f"weights have dtype {name}, expected one of {', '.join(DTYPES)}")
    return name


def provenance(fmt: str, path: Path, files: list[str], config: Any = None) -> dict[str, Any]:
    """What ``metadata.extra['provenance']`` records: the format, where it was read from, the
    files (the first holds the weights) and the original config, as it was."""
    return {"format": fmt, "path": str(path.resolve()), "files": files, "config": config}


def build(cfg: SAEConfig, tensors: dict[str, Tensor], file: Path, fmt: str) -> SAE:
    """The SAE of ``cfg`` holding ``tensors`` (cast to ``cfg.dtype``), refusing NaN/inf."""
    sae = ARCHITECTURES[cfg.architecture](cfg)
    expected = sae.state_dict()
    assert set(tensors) == set(expected), (sorted(tensors), sorted(expected))
    dtype = getattr(torch, cfg.dtype)
    for name, tensor in tensors.items():
        bad = ~torch.isfinite(tensor)
        if bad.any():
            raise fail(
                file,
                fmt,
                f"tensor {name} holds {int(bad.sum())} NaN/inf values; the file is damaged",
            )
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise fail(
                file,
                fmt,
                f"tensor {name} has shape {tuple(tensor.shape)}, expected "
                f"{tuple(expected[name].shape)}",
            )
    sae.load_state_dict({n: t.to(dtype).contiguous() for n, t in tensors.items()})
    return sae.eval()


def scalar(file: Path, fmt: str, data: dict[str, Any], key: str, kind: type = float) -> Any:
    value = data.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        raise fail(file, fmt, f"{key} must be a number, found {value!r}")
    return value


# Hugging Face module paths (Gemma Scope 2's hf_hook_point_in / _out) for each saescope site kind,
# as written for Gemma 3, whose attn_out / mlp_out are the post-norm outputs saescope hooks and
# whose mlp_in (what the MLP reads) is the pre-FFN norm's output.
HF_HOOKS = {
    "resid_post": "model.layers.{layer}.output",
    "mlp_in": "model.layers.{layer}.pre_feedforward_layernorm.output",
    "mlp_out": "model.layers.{layer}.post_feedforward_layernorm.output",
    "attn_out": "model.layers.{layer}.post_attention_layernorm.output",
    "mlp_act": "model.layers.{layer}.mlp.down_proj.input",
}
_HF_TO_KIND = {
    "output": "resid_post",
    "pre_feedforward_layernorm.output": "mlp_in",
    "post_feedforward_layernorm.output": "mlp_out",
    "post_attention_layernorm.output": "attn_out",
    "mlp.down_proj.input": "mlp_act",
}


def site_from_hf(hook: object) -> str | None:
    """The saescope site of an HF module path (``model.layers.6.output`` ->
    ``layers.6.resid_post``), or None where saescope has no such site (``self_attn.o_proj.input``,
    the per-head z of an attention SAE)."""
    if not isinstance(hook, str):
        return None
    m = re.search(r"(?:^|\.)layers\.(\d+)\.(.+)$", hook)
    if m is None or m.group(2) not in _HF_TO_KIND:
        return None
    return f"layers.{int(m.group(1))}.{_HF_TO_KIND[m.group(2)]}"


def hf_from_site(site: str) -> str:
    """The HF module path written for ``site`` (``layers.6.resid_post``)."""
    from saescope._sites import Site

    parsed = Site.parse(site)
    if parsed.kind == "resid_pre":
        if parsed.layer == 0:
            raise SaescopeError(
                "layers.0.resid_pre (the scaled embeddings) has no HF module output to name; "
                "Gemma Scope 2 files need another site"
            )
        return HF_HOOKS["resid_post"].format(layer=parsed.layer - 1)
    return HF_HOOKS[parsed.kind].format(layer=parsed.layer)


def tl_site(hook: object) -> str | None:
    """The saescope site of a TransformerLens hook name, or None if it has none."""
    from saescope._sites import Site

    if not isinstance(hook, str):
        return None
    try:
        return Site.parse(hook).name
    except SaescopeError:
        return None


def metadata(
    model_name: object,
    site: str | None,
    prov: dict[str, Any],
    site_out: str | None = None,
    **extra: Any,
):  # -> SAEMetadata
    """SAE metadata of a foreign file: its model and site (a transcoder's output site too)
    where known, and its provenance."""
    from saescope._sites import Site
    from saescope.sae.config import SAEMetadata

    return SAEMetadata(
        model_name=model_name if isinstance(model_name, str) else None,
        site=site,
        hook_name=Site.parse(site).tl_name if site else None,
        site_out=site_out,
        hook_name_out=Site.parse(site_out).tl_name if site_out else None,
        extra={"provenance": prov, **{k: v for k, v in extra.items() if v is not None}},
    )
