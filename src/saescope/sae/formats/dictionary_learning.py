"""dictionary_learning (Marks et al.): ``trainer_i/{ae.pt, config.json}``.

``ae.pt`` is ``torch.save(ae.state_dict())``, read with ``weights_only=True`` only.
``config.json["trainer"]["dict_class"]`` names the class; their formulas (``dictionary.py``,
``trainers/top_k.py``, ``trainers/batch_top_k.py``, ``trainers/matryoshka_batch_top_k.py``):

    AutoEncoder          relu(encoder(x - bias)),          decoder(f) + bias
    GatedAutoEncoder     x_enc = encoder(x - decoder_bias); (x_enc + gate_bias > 0)
                         * relu(exp(r_mag) * x_enc + mag_bias);   decoder(f) + decoder_bias
    JumpReluAutoEncoder  pre = x @ W_enc + b_enc (b_dec subtracted only if configured);
                         relu(pre * (pre > threshold));   f @ W_dec + b_dec
    AutoEncoderTopK      TopK_k(relu(encoder(x - b_dec)));  decoder(f) + b_dec
    BatchTopKSAE         a = relu(encoder(x - b_dec)); a * (a > threshold), threshold a scalar
    MatryoshkaBatchTopKSAE   the same with W_enc (d_in, d_sae), W_dec (d_sae, d_in)

``encoder.weight`` is (d_sae, d_in) and ``decoder.weight`` (d_in, d_sae) (nn.Linear);
BatchTopK's scalar threshold becomes a JumpReLU threshold per latent (an unset -1 fires every
positive latent, as relu does).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from saescope.sae.base import SAE
from saescope.sae.config import SAEConfig
from saescope.sae.formats import _common as c

NAME = "dictionary_learning"
AE, CONFIG = "ae.pt", "config.json"
FMT = "dictionary_learning (ae.pt + config.json)"


def detect(path: Path) -> bool:
    return path.is_dir() and (path / AE).exists()


def _site(trainer: dict) -> str | None:
    """The site where the trainer says; dictionary_learning names submodules freely, so only
    a layer with a recognisable kind is taken (``resid_post_layer_3``, ``layer`` + ``io``)."""
    name = str(trainer.get("submodule_name") or "")
    m = re.search(r"(resid_post|resid_pre|mlp_out|attn_out)_layer_(\d+)", name)
    if m:
        return f"layers.{int(m.group(2))}.{m.group(1)}"
    return None


def read(path: Path, device: str | torch.device = "cpu") -> SAE:
    config = c.read_json(path / CONFIG, FMT)
    trainer = config.get("trainer")
    if not isinstance(trainer, dict):
        raise c.fail(path / CONFIG, FMT, "it has no 'trainer' object")
    d = c.scalar(path / CONFIG, FMT, trainer, "activation_dim", int)
    m = c.scalar(path / CONFIG, FMT, trainer, "dict_size", int)
    cls = trainer.get("dict_class")
    file = path / AE
    state = c.read_state_dict(file, FMT)
    # -- transcoders: one place, extended once the transcoder kind exists ----------------------
    io = (
        (config.get("buffer") or {}).get("io", "out")
        if isinstance(config.get("buffer"), dict)
        else "out"
    )
    if io in ("in_and_out", "in_to_out"):
        raise c.transcoder(path / CONFIG, FMT, f"buffer.io={io!r}")
    k = None
    apply_b_dec = True
    if cls == "AutoEncoder":
        arch = "relu"
        W_enc_t, b_enc, W_dec_t, b_dec = c.need(
            file, FMT, state, "encoder.weight", "encoder.bias", "decoder.weight", "bias"
        )
        weights = _linear(file, d, m, W_enc_t, b_enc, W_dec_t, b_dec)
    elif cls == "GatedAutoEncoder":
        arch = "gated"
        W_enc_t, W_dec_t, b_dec, b_gate, b_mag, r_mag = c.need(
            file,
            FMT,
            state,
            "encoder.weight",
            "decoder.weight",
            "decoder_bias",
            "gate_bias",
            "mag_bias",
            "r_mag",
        )
        c.check_shape(file, FMT, "encoder.weight", W_enc_t, (m, d), "(d_sae, d_in)")
        c.check_shape(file, FMT, "decoder.weight", W_dec_t, (d, m), "(d_in, d_sae)")
        c.check_shape(file, FMT, "decoder_bias", b_dec, (d,), "(d_in,)")
        for name, bias in (("gate_bias", b_gate), ("mag_bias", b_mag), ("r_mag", r_mag)):
            c.check_shape(file, FMT, name, bias, (m,), "(d_sae,)")
        weights = {
            "W_enc": W_enc_t.t(),
            "W_dec": W_dec_t.t(),
            "b_dec": b_dec,
            "b_gate": b_gate,
            "b_mag": b_mag,
            "r_mag": r_mag,
        }
    elif cls == "JumpReluAutoEncoder":
        arch = "jumprelu"
        apply_b_dec = bool(trainer.get("apply_b_dec_to_input", False))
        W_enc, b_enc, W_dec, b_dec, thr = c.need(
            file, FMT, state, "W_enc", "b_enc", "W_dec", "b_dec", "threshold"
        )
        weights = _native(file, d, m, W_enc, b_enc, W_dec, b_dec)
        c.check_shape(file, FMT, "threshold", thr, (m,), "(d_sae,)")
        weights["threshold"] = thr
    elif cls == "AutoEncoderTopK":
        arch = "topk"
        W_enc_t, b_enc, W_dec_t, b_dec, kt = c.need(
            file, FMT, state, "encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k"
        )
        weights = _linear(file, d, m, W_enc_t, b_enc, W_dec_t, b_dec)
        k = int(kt)
    elif cls in ("BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        arch = "jumprelu"
        if cls == "BatchTopKSAE":
            W_enc_t, b_enc, W_dec_t, b_dec = c.need(
                file, FMT, state, "encoder.weight", "encoder.bias", "decoder.weight", "b_dec"
            )
            weights = _linear(file, d, m, W_enc_t, b_enc, W_dec_t, b_dec)
        else:
            W_enc, b_enc, W_dec, b_dec = c.need(
                file, FMT, state, "W_enc", "b_enc", "W_dec", "b_dec"
            )
            weights = _native(file, d, m, W_enc, b_enc, W_dec, b_dec)
        [thr] = c.need(file, FMT, state, "threshold")
        if thr.numel() != 1 or not thr.is_floating_point():
            raise c.fail(
                file,
                FMT,
                f"threshold has shape {tuple(thr.shape)} dtype {thr.dtype}, expected a float scalar",
            )
        # relu(pre) * (relu(pre) > t) == pre * (pre > max(t, 0)): JumpReLU with t everywhere.
        weights["threshold"] = torch.full((m,), float(thr), dtype=weights["W_dec"].dtype)
    else:
        raise c.fail(
            path / CONFIG,
            FMT,
            f"dict_class is {cls!r}; expected AutoEncoder, GatedAutoEncoder, JumpReluAutoEncoder, "
            "AutoEncoderTopK, BatchTopKSAE or MatryoshkaBatchTopKSAE",
        )
    prov = c.provenance(NAME, path, [AE, CONFIG], config)
    cfg = SAEConfig(
        d_in=d,
        d_sae=m,
        architecture=arch,
        k=k,
        apply_b_dec_to_input=apply_b_dec,
        dtype=c.dtype_name(file, FMT, weights["W_enc"]),
        metadata=c.metadata(trainer.get("lm_name"), _site(trainer), prov, dict_class=cls),
    )
    return c.build(cfg, weights, file, FMT).to(device)


def _linear(
    file: Path, d: int, m: int, W_enc_t: Tensor, b_enc: Tensor, W_dec_t: Tensor, b_dec: Tensor
) -> dict[str, Tensor]:
    """nn.Linear orientation: encoder.weight (d_sae, d_in), decoder.weight (d_in, d_sae)."""
    c.check_shape(file, FMT, "encoder.weight", W_enc_t, (m, d), "(d_sae, d_in)")
    c.check_shape(file, FMT, "encoder.bias", b_enc, (m,), "(d_sae,)")
    c.check_shape(file, FMT, "decoder.weight", W_dec_t, (d, m), "(d_in, d_sae)")
    c.check_shape(file, FMT, "decoder bias", b_dec, (d,), "(d_in,)")
    return {"W_enc": W_enc_t.t(), "b_enc": b_enc, "W_dec": W_dec_t.t(), "b_dec": b_dec}


def _native(
    file: Path, d: int, m: int, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor
) -> dict[str, Tensor]:
    """SAELens orientation: W_enc (d_in, d_sae), W_dec (d_sae, d_in)."""
    c.check_shape(file, FMT, "W_enc", W_enc, (d, m), "(d_in, d_sae)")
    c.check_shape(file, FMT, "b_enc", b_enc, (m,), "(d_sae,)")
    c.check_shape(file, FMT, "W_dec", W_dec, (m, d), "(d_sae, d_in)")
    c.check_shape(file, FMT, "b_dec", b_dec, (d,), "(d_in,)")
    return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
