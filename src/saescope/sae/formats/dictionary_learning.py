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


# saescope tensor -> (the file's name, its shape in d = d_in and m = d_sae, stored transposed)
_Spec = dict[str, tuple[str, str, bool]]
_LINEAR: _Spec = {  # nn.Linear: encoder.weight (d_sae, d_in), decoder.weight (d_in, d_sae)
    "W_enc": ("encoder.weight", "md", True),
    "b_enc": ("encoder.bias", "m", False),
    "W_dec": ("decoder.weight", "dm", True),
    "b_dec": ("b_dec", "d", False),
}
_NATIVE: _Spec = {  # SAELens orientation: W_enc (d_in, d_sae), W_dec (d_sae, d_in)
    "W_enc": ("W_enc", "dm", False),
    "b_enc": ("b_enc", "m", False),
    "W_dec": ("W_dec", "md", False),
    "b_dec": ("b_dec", "d", False),
}
CLASSES: dict[str, tuple[str, _Spec]] = {
    "AutoEncoder": ("relu", {**_LINEAR, "b_dec": ("bias", "d", False)}),
    "GatedAutoEncoder": (
        "gated",
        {
            "W_enc": ("encoder.weight", "md", True),
            "W_dec": ("decoder.weight", "dm", True),
            "b_dec": ("decoder_bias", "d", False),
            "b_gate": ("gate_bias", "m", False),
            "b_mag": ("mag_bias", "m", False),
            "r_mag": ("r_mag", "m", False),
        },
    ),
    "JumpReluAutoEncoder": ("jumprelu", {**_NATIVE, "threshold": ("threshold", "m", False)}),
    "AutoEncoderTopK": ("topk", _LINEAR),
    "BatchTopKSAE": ("jumprelu", _LINEAR),
    "MatryoshkaBatchTopKSAE": ("jumprelu", _NATIVE),
}
"""Each dict_class: saescope's architecture and where its tensors are."""
_DIMS = {"d": "(d_in,)", "m": "(d_sae,)", "dm": "(d_in, d_sae)", "md": "(d_sae, d_in)"}


def read(path: Path, device: str | torch.device = "cpu") -> SAE:
    config = c.read_json(path / CONFIG, FMT)
    trainer = config.get("trainer")
    if not isinstance(trainer, dict):
        raise c.fail(path / CONFIG, FMT, "it has no 'trainer' object")
    d = c.scalar(path / CONFIG, FMT, trainer, "activation_dim", int)
    m = c.scalar(path / CONFIG, FMT, trainer, "dict_size", int)
    cls = trainer.get("dict_class")
    if cls not in CLASSES:
        raise c.fail(
            path / CONFIG, FMT, f"dict_class is {cls!r}; expected one of {', '.join(CLASSES)}"
        )
    buffer = config.get("buffer")
    io = buffer.get("io", "out") if isinstance(buffer, dict) else "out"
    # dictionary_learning has no transcoder class: an in-to-out buffer is a layout saescope
    # cannot check against a published formula.
    if io in ("in_and_out", "in_to_out"):
        raise c.transcoder(
            path / CONFIG,
            FMT,
            f"buffer.io={io!r}",
            "dictionary_learning defines no transcoder class whose formula it could be checked "
            "against; convert it to a SAELens transcoder directory",
        )
    file = path / AE
    state = c.read_state_dict(file, FMT)
    arch, spec = CLASSES[cls]
    sizes = {"d": d, "m": m}
    weights = {}
    for ours, (theirs, dims, transposed) in spec.items():
        [tensor] = c.need(file, FMT, state, theirs)
        c.check_shape(file, FMT, theirs, tensor, tuple(sizes[x] for x in dims), _DIMS[dims])
        weights[ours] = tensor.t() if transposed else tensor
    k = None
    if cls == "AutoEncoderTopK":
        [k_tensor] = c.need(file, FMT, state, "k")
        k = int(k_tensor)
    if cls in ("BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        [thr] = c.need(file, FMT, state, "threshold")
        if thr.numel() != 1 or not thr.is_floating_point():
            raise c.fail(
                file,
                FMT,
                f"threshold has shape {tuple(thr.shape)}, dtype {thr.dtype}; expected a float scalar",
            )
        # relu(pre) * (relu(pre) > t) == pre * (pre > max(t, 0)): JumpReLU with t everywhere.
        weights["threshold"] = torch.full((m,), float(thr), dtype=weights["W_dec"].dtype)
    # JumpReluAutoEncoder subtracts b_dec only when configured to; the others always do.
    apply_b_dec = (
        bool(trainer.get("apply_b_dec_to_input", False)) if cls == "JumpReluAutoEncoder" else True
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
