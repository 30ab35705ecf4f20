"""The head and the family facts it reads, checked against the real transformers modules."""

import dataclasses
import math

import pytest
import torch
from tiny_models import TINY_CONFIGS, VOCAB, tiny_model

from saescope.errors import SaescopeError
from saescope.models import FAMILIES, Family, run_with_cache
from saescope.models.forward import final_norm, logit_softcap, unembed


def test_every_registered_family_has_a_tiny_model_here() -> None:
    served = {tiny_model(name).family.name for name in TINY_CONFIGS}
    assert served == set(FAMILIES), "add a tiny config for each new family to tests/tiny_models"


@pytest.mark.parametrize("name", TINY_CONFIGS)
@torch.no_grad()
def test_norm_gain_offset_is_what_the_final_norm_computes(name: str) -> None:
    model = tiny_model(name)
    norm = final_norm(model)
    x = torch.randn(5, 64)
    # The norm is affine in its weight: norm(x) = n(x) * (weight + offset) (+ bias, zeroed here).
    if getattr(norm, "bias", None) is not None:
        norm.bias.zero_()
    norm.weight.zero_()
    at_zero = norm(x)  # n(x) * offset
    norm.weight.fill_(1.0)
    at_one = norm(x)  # n(x) * (1 + offset)
    offset = model.family.norm_gain_offset
    torch.testing.assert_close(at_zero, offset * (at_one - at_zero))
    assert (at_one - at_zero).abs().max() > 0.1


@pytest.mark.parametrize("name", TINY_CONFIGS)
@torch.inference_mode()
def test_unembed_of_the_last_residual_is_the_models_output(name: str) -> None:
    model = tiny_model(name)
    ids = torch.randint(4, VOCAB, (2, 10))
    last = f"layers.{model.n_layers - 1}.resid_post"
    resid = run_with_cache(model, ids, [last])[last]
    logits = model.hf(input_ids=ids, use_cache=False).logits.float()
    torch.testing.assert_close(unembed(model, resid), logits)
    expected_cap = 30.0 if name == "gemma2" else None  # Gemma2Config's default; the rest none
    assert logit_softcap(model) == expected_cap


def test_a_family_naming_a_missing_softcap_attribute_is_an_error() -> None:
    model = tiny_model("llama")
    wrong = dataclasses.replace(model.family, logit_softcap="final_logit_softcapping")
    model = dataclasses.replace(model, family=wrong)
    with pytest.raises(SaescopeError, match=r"config\.final_logit_softcapping.*LlamaConfig"):
        unembed(model, torch.randn(3, 64))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("final_norm", (), "final_norm must be a non-empty tuple"),
        ("model_types", "llama", "model_types must be a non-empty tuple"),
        ("norm_gain_offset", math.nan, "norm_gain_offset must be a finite number"),
    ],
)
def test_family_fields_are_validated(field: str, value: object, match: str) -> None:
    with pytest.raises(SaescopeError, match=match):
        dataclasses.replace(FAMILIES["llama"], **{field: value})


def test_family_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAMILIES["gemma3"].norm_gain_offset = 0.0  # type: ignore[misc]
    assert isinstance(FAMILIES["gemma3"], Family)
