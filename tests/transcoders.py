"""Exact transcoders for tiny models: a GPT-2 whose MLPs are linear (``activation_function=
"linear"``), and a transcoder that computes one of them exactly (with ReLU latent pairs, or
with its skip)."""

from __future__ import annotations

import torch
import transformers as tf
from tiny_models import TINY_CONFIGS, tiny_tokenizer

from saescope.models import LanguageModel
from saescope.sae import SAE, SAEConfig, SAEMetadata, build_sae

LAYER = 1
SITE_IN = f"layers.{LAYER}.mlp_in"
SITE_OUT = f"layers.{LAYER}.mlp_out"


def linear_mlp_hf() -> torch.nn.Module:
    cfg = TINY_CONFIGS["gpt2"]()
    cfg.activation_function = "linear"
    torch.manual_seed(0)
    return tf.AutoModelForCausalLM.from_config(cfg).eval()


def linear_mlp_model(tokenizer: object) -> LanguageModel:
    """A tiny GPT-2 whose MLPs have an identity activation: y = x M + c."""
    return LanguageModel.wrap(linear_mlp_hf(), tokenizer, name="tiny-linear-gpt2")


def save_linear_mlp_model(path: object) -> None:
    linear_mlp_hf().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)


def mlp_map(model: LanguageModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(M (d, d), c (d,)) with mlp(x) = x @ M + c for the linearised MLP."""
    mlp = model.hf.transformer.h[LAYER].mlp
    W_fc, b_fc = mlp.c_fc.weight.detach(), mlp.c_fc.bias.detach()  # Conv1D: (in, out)
    W_pr, b_pr = mlp.c_proj.weight.detach(), mlp.c_proj.bias.detach()
    return W_fc @ W_pr, b_fc @ W_pr + b_pr


def exact_transcoder(model: LanguageModel, skip: bool = False) -> SAE:
    """A ReLU transcoder mlp_in -> mlp_out computing the MLP exactly.

    Without a skip, latents 2i and 2i+1 are relu(x_i) and relu(-x_i), decoded by the rows
    +M_i and -M_i: sum_i (relu(x_i) - relu(-x_i)) M_i = x M. With a skip, W_skip = M^T does it
    all and the latents carry a small extra that the decoder cancels (W_dec rows zero).
    """
    M, c = mlp_map(model)
    d = M.shape[0]
    meta = SAEMetadata(model_name=model.name, site=SITE_IN, site_out=SITE_OUT)
    cfg = SAEConfig(
        d_in=d,
        d_sae=2 * d,
        architecture="relu",
        apply_b_dec_to_input=False,
        d_out=d,
        skip=skip,
        metadata=meta,
    )
    tc = build_sae(cfg, seed=0)
    eye = torch.eye(d)
    with torch.no_grad():
        tc.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        tc.b_enc.zero_()
        tc.b_dec.copy_(c)
        if skip:
            tc.W_dec.zero_()
            tc.W_skip.copy_(M.t())
        else:
            tc.W_dec.copy_(torch.cat([M, -M], dim=0))
    return tc.eval()
