"""Which SAE features or neurons a logit depends on: attribution patching, checked by ablation.

The metric is ``m = logit[target] - logit[versus]`` (or ``logit[target]``) at the prompt's last
position. One forward and one backward pass in float32 give the gradient of ``m`` with respect
to the site's value ``x_t`` at every position t; each unit's attribution is its activation times
the gradient of ``m`` with respect to it, summed over the prompt's ordinary tokens (AtP: Syed et
al. 2023, Kramár et al. 2024):

    neurons (x = the site's units a):   A_i = sum_t a_ti * dm/da_ti
    SAE features, spliced in with the error term kept, x_t = z_t @ W_dec + b_dec + (x_t - x_hat_t):
                                        A_i = sum_t z_ti * (dm/dx_t . W_dec[i])

The splice leaves the forward pass exactly as it was, and the error term is held fixed, so
``dm/dz_ti`` is ``dm/dx_t`` through the decoder row: no second pass is needed. ``A_i`` is the
first-order estimate of what zero-ablating unit i at every token would remove from ``m``:
ablating it changes ``m`` by about ``-A_i``. Special tokens (BOS) are left out, as every
intervention in ``steer`` leaves them out.

``verify`` then does the interventions for real (``intervene`` with ``FeatureIntervention`` or
``UnitIntervention``, error term kept): the exact change of ``m`` when the unit is ablated at
every token, and the target's probability when the unit is clamped (to a multiple of its
largest activation on the prompt, or to a given value).

The gradient pass and the checks run with the model's weights in float32 (``float32_weights``):
in bf16 the gradients, and small differences of logits, are mostly rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from saescope.data import keep_positions
from saescope.errors import SaescopeError
from saescope.models import LanguageModel, edit_sites, run_with_cache
from saescope.sae import SAE, sae_site
from saescope.steer.interventions import (
    FeatureIntervention,
    Intervention,
    UnitIntervention,
    ablate,
    clamp,
    intervene,
)


def single_token(model: LanguageModel, text: str, what: str = "target") -> int:
    """The id of ``text`` if the tokenizer makes it exactly one token (no BOS added)."""
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise SaescopeError(
            f"{what} {text!r} is {len(ids)} tokens; give single tokens "
            "(mind the leading space: ' high')"
        )
    return int(ids[0])


@dataclass(frozen=True)
class UnitScore:
    """One unit's attribution to the metric."""

    unit: int
    """Feature index (SAE) or neuron index (mlp_act unit)."""
    attribution: float
    """sum over tokens of activation x dm/d(activation): about -(the change of m on ablation)."""
    position: int
    """Token index (BOS = 0) of its largest contribution |activation x gradient|."""
    activation: float
    """Its activation at ``position``."""
    peak: float
    """Its activation of largest magnitude on the prompt (the base of a clamp multiple)."""


@dataclass(frozen=True, eq=False)
class Attribution:
    """The units of one site ranked by |attribution| to one metric on one prompt."""

    prompt_tokens: tuple[str, ...]
    site: str
    kind: str
    """``"sae"`` (features) or ``"neurons"`` (raw units of the site)."""
    target: int
    versus: int | None
    metric: float
    """m on the clean prompt: logit[target] - logit[versus], or logit[target]."""
    probability: float
    """The target's next-token probability on the clean prompt."""
    units: tuple[UnitScore, ...]
    """The ``top`` units of nonzero attribution, largest |attribution| first."""
    scores: Tensor
    """(n_units,) every unit's attribution, for rankings beyond ``units``."""
    sae: SAE | None = None
    ids: Tensor | None = None
    """(1, T) the prompt's token ids, BOS included where the model uses one."""


@dataclass(frozen=True)
class Verified:
    """What a real intervention on one unit does to the metric."""

    unit: int
    ablation_delta: float
    """m(unit zero-ablated at every token) - m(clean); attribution predicts -attribution."""
    clamp_value: float
    clamp_delta: float
    """m(unit clamped to ``clamp_value`` at every token) - m(clean)."""
    probability: float
    """The target's probability, clean."""
    clamped_probability: float
    """The target's probability with the unit clamped."""


@contextmanager
def float32_weights(model: LanguageModel) -> Iterator[None]:
    """Inside the block the model's floating weights and buffers are float32; on exit each gets
    back its own tensor (so a bf16 model is restored bit for bit, whatever happens inside)."""
    saved: list[tuple[Tensor, Tensor]] = []
    seen: set[int] = set()
    try:
        for t in itertools.chain(model.hf.parameters(), model.hf.buffers()):
            if id(t) in seen or not t.is_floating_point() or t.dtype == torch.float32:
                continue
            seen.add(id(t))
            saved.append((t, t.data))
            t.data = t.data.float()
        yield
    finally:
        for t, data in saved:
            t.data = data


def _prompt_ids(model: LanguageModel, prompt: str) -> Tensor:
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]  # (1, T)
    if ids.shape[1] == 0:
        raise SaescopeError("the prompt is empty after tokenization")
    return ids.to(model.device)


def _kept(model: LanguageModel, ids: Tensor) -> Tensor:
    """(T,) the positions interventions edit by default: every ordinary (non-special) token."""
    vocabulary = model.tokenizer if model.tokenizer is not None else model.hf.config
    return keep_positions(ids, vocabulary)[0]


def _metric(logits: Tensor, target: int, versus: int | None) -> Tensor:
    """m from one position's logits (vocab,)."""
    return logits[target] - logits[versus] if versus is not None else logits[target]


def site_gradients(
    model: LanguageModel, ids: Tensor, site: str, targets: list[tuple[int, int, int | None]]
) -> tuple[Tensor, list[Tensor], Tensor]:
    """The site's value x (T, d) and, for each (position, target, versus), dm/dx (T, d), with
    m = logit[target] - logit[versus] at that position; also the logits (T, vocab).

    One forward pass; one backward pass per metric. Runs in float32 (the caller's model is
    cast inside ``float32_weights``)."""
    store: dict[str, Tensor] = {}

    def leaf(x: Tensor) -> Tensor:  # (1, T, d)
        store["x"] = x.detach().float().requires_grad_(True)
        return store["x"].to(x.dtype)

    with (
        float32_weights(model),
        torch.inference_mode(False),
        torch.enable_grad(),
        edit_sites(model, [(site, leaf)]),
    ):
        logits = model.hf(input_ids=ids, use_cache=False).logits[0].float()  # (T, vocab)
        grads = []
        for n, (position, target, versus) in enumerate(targets):
            m = _metric(logits[position], target, versus)
            (g,) = torch.autograd.grad(m, store["x"], retain_graph=n < len(targets) - 1)
            grads.append(g[0].detach())  # (T, d)
    return store["x"][0].detach(), grads, logits.detach()


def unit_values(x: Tensor, sae: SAE | None) -> Tensor:
    """(T, n_units) the units being attributed: the SAE's latents of x (T, d), or x itself."""
    if sae is None:
        return x
    with torch.no_grad():
        return sae.encode_dense(x.to(sae.W_dec.device, torch.float32)).float().to(x.device)


def unit_gradients(grad: Tensor, sae: SAE | None) -> Tensor:
    """(T, n_units) dm/d(unit) from dm/dx (T, d): through the decoder rows for SAE latents."""
    if sae is None:
        return grad
    W_dec = sae.W_dec.detach().float().to(grad.device)  # (F, d)
    return grad @ W_dec.t()


def _check_site(model: LanguageModel, sae: SAE | None, site: str | None) -> str:
    if sae is None and site is None:
        raise SaescopeError("give an SAE (its features) or a site such as layers.12.mlp_act")
    name = model.site(site if site is not None else sae_site(sae)).name  # type: ignore[arg-type]
    if sae is not None and model.site_dim(name) != sae.cfg.d_in:
        raise SaescopeError(
            f"SAE expects d_in={sae.cfg.d_in}, {name} of {model.name} has width "
            f"{model.site_dim(name)}; was it trained on another site or model?"
        )
    return name


def attribute(
    model: LanguageModel,
    prompt: str,
    target: str,
    versus: str | None = None,
    sae: SAE | None = None,
    site: str | None = None,
    top: int = 20,
) -> Attribution:
    """Rank the SAE's features (``sae``, at ``site`` or its own) or the raw units of ``site``
    by their attribution to m at the last position (module docstring)."""
    if top < 1:
        raise SaescopeError(f"top must be >= 1, got {top}")
    name = _check_site(model, sae, site)
    target_id = single_token(model, target, "target")
    versus_id = None if versus is None else single_token(model, versus, "versus")
    if versus_id == target_id:
        raise SaescopeError(f"target and versus are the same token ({target!r}); m would be 0")
    ids = _prompt_ids(model, prompt)
    x, (grad,), logits = site_gradients(model, ids, name, [(-1, target_id, versus_id)])
    keep = _kept(model, ids).unsqueeze(-1)  # (T, 1)
    values = unit_values(x, sae) * keep  # (T, n)
    contrib = values * unit_gradients(grad, sae)  # (T, n)
    scores = contrib.sum(0).cpu()  # (n,)
    order = scores.abs().argsort(descending=True)
    units = []
    for u in order[:top].tolist():
        if scores[u] == 0:
            break
        t = int(contrib[:, u].abs().argmax())
        peak = int(values[:, u].abs().argmax())
        units.append(UnitScore(u, float(scores[u]), t, float(values[t, u]), float(values[peak, u])))
    last = logits[-1]
    return Attribution(
        prompt_tokens=tuple(model.tokenizer.decode([int(i)]) for i in ids[0]),
        site=name,
        kind="sae" if sae is not None else "neurons",
        target=target_id,
        versus=versus_id,
        metric=float(_metric(last, target_id, versus_id)),
        probability=float(last.softmax(-1)[target_id]),
        units=tuple(units),
        scores=scores,
        sae=sae,
        ids=ids.cpu(),
    )


def _intervention(a: Attribution, edit: object) -> Intervention:
    if a.sae is not None:
        return FeatureIntervention(a.sae, (edit,), at=a.site)  # type: ignore[arg-type]
    return UnitIntervention(a.site, (edit,))  # type: ignore[arg-type]


def _measure(
    model: LanguageModel, a: Attribution, interventions: list[Intervention]
) -> tuple[float, float]:
    """(m, the target's probability) with ``interventions`` applied."""
    assert a.ids is not None
    with torch.inference_mode(), intervene(model, interventions):
        last = model.hf(input_ids=a.ids.to(model.device), use_cache=False).logits[0, -1].float()
    return float(_metric(last, a.target, a.versus)), float(last.softmax(-1)[a.target])


def verify(
    model: LanguageModel,
    a: Attribution,
    units: list[int] | None = None,
    clamp_multiple: float = 2.0,
    clamp_to: float | None = None,
) -> list[Verified]:
    """Ablate and clamp each of ``units`` (default: every unit of ``a.units``) for real, one at a
    time, at every ordinary token: the exact change of m and the target's probability.

    The clamp value is ``clamp_to`` if given, else ``clamp_multiple`` x the unit's activation of
    largest magnitude on the prompt. Both runs use float32 weights, as the attribution did; m is
    measured again here, so that a gap between attribution and ablation is not rounding."""
    peaks = {s.unit: s.peak for s in a.units}
    chosen = [s.unit for s in a.units] if units is None else units
    out = []
    with float32_weights(model):
        clean, p_clean = _measure(model, a, [])
        for u in chosen:
            peak = peaks.get(u)
            if peak is None:
                peak = float(_peak_of(model, a, u))
            value = clamp_to if clamp_to is not None else clamp_multiple * peak
            ablated, _ = _measure(model, a, [_intervention(a, ablate(u))])
            clamped, p_clamped = _measure(model, a, [_intervention(a, clamp(u, value))])
            out.append(Verified(u, ablated - clean, value, clamped - clean, p_clean, p_clamped))
    return out


def _peak_of(model: LanguageModel, a: Attribution, unit: int) -> float:
    """A unit's activation of largest magnitude on the prompt's ordinary tokens."""
    assert a.ids is not None
    ids = a.ids.to(model.device)
    x = run_with_cache(model, ids, [a.site])[a.site][0].float()
    values = unit_values(x, a.sae)[:, unit] * _kept(model, ids)
    return float(values[values.abs().argmax()])


@dataclass(frozen=True)
class PositionAttribution:
    """One position's units ranked by attribution to the logit of its own top next token."""

    position: int
    token: str
    predicted: str
    """The model's most likely next token there: whose logit the attribution is to."""
    units: tuple[tuple[int, float, float], ...]
    """(unit, attribution, activation), largest |attribution| first; empty at special tokens."""
    excluded: bool = False


def next_token_attribution(
    model: LanguageModel,
    prompt: str,
    sae: SAE | None = None,
    site: str | None = None,
    k: int = 5,
) -> list[PositionAttribution]:
    """For every position t, the ``k`` units at t of largest |a_ti * dlogit_t[y_t]/da_ti|, where
    y_t is the model's top prediction at t: which of the features firing there make the model
    say what it says next (one backward pass per position)."""
    name = _check_site(model, sae, site)
    ids = _prompt_ids(model, prompt)
    with float32_weights(model), torch.inference_mode():
        predicted = model.hf(input_ids=ids, use_cache=False).logits[0].argmax(-1).tolist()
    T = ids.shape[1]
    metrics: list[tuple[int, int, int | None]] = [(t, int(predicted[t]), None) for t in range(T)]
    x, grads, _ = site_gradients(model, ids, name, metrics)
    keep = _kept(model, ids)
    values = unit_values(x, sae)  # (T, n)
    decode = model.tokenizer.decode
    out = []
    for t in range(T):
        token, next_token = decode([int(ids[0, t])]), decode([predicted[t]])
        if not keep[t]:
            out.append(PositionAttribution(t, token, next_token, (), excluded=True))
            continue
        contrib = values[t] * unit_gradients(grads[t][t : t + 1], sae)[0]  # (n,)
        order = contrib.abs().argsort(descending=True)[:k].tolist()
        units = tuple((u, float(contrib[u]), float(values[t, u])) for u in order if contrib[u] != 0)
        out.append(PositionAttribution(t, token, next_token, units))
    return out
