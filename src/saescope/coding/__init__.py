"""Sparse coding over a fixed dictionary (inference-time optimisation): batched matching,
orthogonal matching and gradient pursuit returning the SAE encoders' ``Latents``, encoder specs
(``gp:k=32``) and ``CodedSAE``, an SAE whose ``encode`` is one of them."""

from saescope.coding.coded import CodedSAE, truncate_topk, with_encoder
from saescope.coding.pursuit import (
    gradient_pursuit,
    matching_pursuit,
    orthogonal_matching_pursuit,
    pursuit,
)
from saescope.coding.spec import SPELLING, EncoderSpec, parse_encoder

__all__ = [
    "SPELLING",
    "CodedSAE",
    "EncoderSpec",
    "gradient_pursuit",
    "matching_pursuit",
    "orthogonal_matching_pursuit",
    "parse_encoder",
    "pursuit",
    "truncate_topk",
    "with_encoder",
]
