"""Goodfire's released SAEs (``Llama-3.1-8B-Instruct-SAE-l19.pth``, ``…-l50.pt``): one
``torch.save``d state dict, read with ``weights_only=True`` only.

    acts  = ReLU(x @ encoder_linear.weight.T + encoder_linear.bias)   encoder_linear.weight (d_sae, d_in)
    x_hat = acts @ decoder_linear.weight.T + decoder_linear.bias      decoder_linear.weight (d_in, d_sae)

No pre-encoder bias. The layer is read from the file name (``-l19``: ``layers.19.resid_post``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from saescope.sae.base import SAE
from saescope.sae.config import SAEConfig
from saescope.sae.formats import _common as c

NAME = "goodfire"
FMT = "Goodfire (encoder_linear / decoder_linear state dict)"
_SUFFIXES = (".pt", ".pth")


def _file(path: Path) -> Path | None:
    if path.is_file() and path.suffix in _SUFFIXES:
        return path
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.suffix in _SUFFIXES and "SAE" in p.name]
        return files[0] if len(files) == 1 else None
    return None


def detect(path: Path) -> bool:
    return _file(path) is not None


def read(path: Path, device: str | torch.device = "cpu") -> SAE:
    file = _file(path) or path
    state = c.read_state_dict(file, FMT)
    enc_w, enc_b, dec_w, dec_b = c.need(
        file,
        FMT,
        state,
        "encoder_linear.weight",
        "encoder_linear.bias",
        "decoder_linear.weight",
        "decoder_linear.bias",
    )
    if enc_b.dim() != 1 or dec_b.dim() != 1:
        raise c.fail(file, FMT, "the biases must be 1-D")
    d, m = len(dec_b), len(enc_b)
    c.check_shape(file, FMT, "encoder_linear.weight", enc_w, (m, d), "(d_sae, d_in)")
    c.check_shape(file, FMT, "decoder_linear.weight", dec_w, (d, m), "(d_in, d_sae)")
    layer = re.search(r"-l(\d+)\b", file.stem)
    site = f"layers.{int(layer.group(1))}.resid_post" if layer else None
    model = re.sub(r"-SAE-l\d+$", "", file.stem)
    prov = c.provenance(NAME, file.parent, [file.name], None)
    cfg = SAEConfig(
        d_in=d,
        d_sae=m,
        architecture="relu",
        apply_b_dec_to_input=False,
        dtype=c.dtype_name(file, FMT, enc_w),
        metadata=c.metadata(f"meta-llama/{model}" if layer else None, site, prov),
    )
    weights = {"W_enc": enc_w.t(), "b_enc": enc_b, "W_dec": dec_w.t(), "b_dec": dec_b}
    return c.build(cfg, weights, file, FMT).to(device)
