"""The SAE in the loop: next-token loss with the SAE's reconstruction spliced in at its site.

For each batch of contexts: the clean forward, the spliced forward (the site's value replaced by
the SAE's reconstruction at every kept position; BOS, padding and special positions keep their
own value), and optionally zero- and mean-ablation of the site. Only the clean forward runs the
whole model; the edited ones re-run the layers from the site onward, from what the clean one
recorded (``models.replay``), unless the model's forward cannot be replayed. Then

    loss recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean)
    delta loss     = CE_spliced - CE_clean
    KL             = KL(clean || spliced) over next-token distributions, per position.

Losses count positions whose prediction and target are both ordinary tokens.

A transcoder replaces its output site (the MLP's output, say) by its prediction from its input
site (the MLP's input), which the clean forward records: the input site comes first in the
forward pass, so no edit changes it. Zero- and mean-ablation then ablate the output site.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.models import LanguageModel, Site, edit_sites
from saescope.models.replay import Prefix, record_prefix, replay_logits
from saescope.sae import SAE, sae_site_out

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplicedStats:
    tokens: int
    """Positions the losses average over."""
    ce_clean: float
    ce_spliced: float
    kl: float
    ce_zero: float | None = None
    ce_mean: float | None = None

    @property
    def delta_loss(self) -> float:
        return self.ce_spliced - self.ce_clean

    @property
    def loss_recovered(self) -> float | None:
        if self.ce_zero is None:
            return None
        gap = self.ce_zero - self.ce_clean
        return (self.ce_zero - self.ce_spliced) / gap if gap else float("nan")

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self) | {"delta_loss": self.delta_loss, "loss_recovered": self.loss_recovered}


def _replace_kept(keep: Tensor, make: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """A site function putting ``make(x)`` at kept positions and leaving the rest as they were."""

    def fn(x: Tensor) -> Tensor:  # (B, T, d)
        mask = keep.to(x.device).unsqueeze(-1)
        return torch.where(mask, make(x).to(x.dtype), x)

    return fn


def reconstruct_with(sae: SAE) -> Callable[[Tensor], Tensor]:
    def make(x: Tensor) -> Tensor:
        out = sae(x.to(sae.W_enc.device, torch.float32)).x_hat
        return out.to(x.device)

    return make


@torch.inference_mode()
def spliced_stats(
    model: LanguageModel,
    sae: SAE,
    site: str,
    batches: Iterable[Tensor],
    keep_fn: Callable[[Tensor], Tensor],
    ablations: bool = True,
    site_out: str | None = None,
) -> SplicedStats:
    """Losses over ``batches`` of token ids (B, T); ``keep_fn(ids)`` gives the kept positions.

    ``site`` is what the SAE reads; a transcoder's output replaces ``site_out`` (default: its
    metadata's output site), which must not come before ``site`` in the forward pass.
    """
    source = model.site(site)
    parsed = source
    if sae.cfg.is_transcoder:
        parsed = model.site(site_out if site_out is not None else sae_site_out(sae))
        if parsed < source:
            raise SaescopeError(
                f"a transcoder from {source.name} to {parsed.name} writes a site the forward "
                "pass reaches before the one it reads; its output site must come after its input"
            )
    _check_width(model, source, sae.cfg.d_in, "d_in")
    _check_width(model, parsed, sae.cfg.out_dim, "d_out" if sae.cfg.is_transcoder else "d_in")
    sums = {"clean": 0.0, "spliced": 0.0, "kl": 0.0, "zero": 0.0, "mean": 0.0}
    count, warned = 0, False
    for ids in batches:
        ids = ids.to(model.device)
        keep = keep_fn(ids.cpu()).to(model.device)  # (B, T)
        scored = keep[:, :-1] & keep[:, 1:]  # prediction made at a kept position of a kept token
        targets = ids[:, 1:]
        mean = torch.zeros(model.site_dim(parsed))  # the site's mean over this batch, for ablation
        inputs: dict[str, Tensor] = {}  # a transcoder's input site, as the clean forward saw it
        recorders = [(parsed, partial(_record_mean, keep=keep, out=mean))]
        if sae.cfg.is_transcoder:
            recorders.insert(0, (source, partial(_record_input, out=inputs)))
        with edit_sites(model, recorders), record_prefix(model, parsed) as recording:
            clean = model_logits(model, ids)
        prefix = recording.prefix()
        if prefix is None and not warned:
            log.warning("%s cannot be replayed from %s; running full forwards", model.name, site)
            warned = True
        make = reconstruct_with(sae)
        if sae.cfg.is_transcoder:
            make = partial(_transcode, make, inputs)
        variants = {"spliced": _replace_kept(keep, make)}
        if ablations:
            variants["zero"] = _replace_kept(keep, torch.zeros_like)
            variants["mean"] = _replace_kept(keep, partial(_broadcast, mean))
        clean_lp = clean.log_softmax(-1)
        sums["clean"] += float(summed_nll(clean_lp, targets, scored))
        for name, fn in variants.items():
            lp = _edited_logits(model, ids, parsed, fn, prefix).log_softmax(-1)
            sums[name] += float(summed_nll(lp, targets, scored))
            if name == "spliced":
                kl = (clean_lp.exp() * (clean_lp - lp)).sum(-1)[:, :-1]
                sums["kl"] += float(kl[scored].sum())
        count += int(scored.sum())
    if count == 0:
        raise SaescopeError("no scored positions: the data is empty or every token is special")
    return SplicedStats(
        count,
        sums["clean"] / count,
        sums["spliced"] / count,
        sums["kl"] / count,
        sums["zero"] / count if ablations else None,
        sums["mean"] / count if ablations else None,
    )


def _check_width(model: LanguageModel, site: Site, width: int, name: str) -> None:
    if model.site_dim(site) != width:
        raise SaescopeError(
            f"SAE expects {name}={width}, {site.name} of {model.name} has width "
            f"{model.site_dim(site)}; was it trained on another site or model?"
        )


def _record_input(x: Tensor, out: dict[str, Tensor]) -> None:
    out["x"] = x.detach()


def _transcode(make: Callable[[Tensor], Tensor], inputs: dict[str, Tensor], y: Tensor) -> Tensor:
    """The transcoder's prediction of the output site ``y`` from the recorded input."""
    return make(inputs["x"]).to(y.device)


def _edited_logits(
    model: LanguageModel,
    ids: Tensor,
    site: Site,
    fn: Callable[[Tensor], Tensor],
    prefix: Prefix | None,
) -> Tensor:
    """Logits (B, T, vocab) with ``fn`` at ``site``: replayed from ``prefix`` when there is one."""
    if prefix is not None:
        return replay_logits(model, prefix, fn)
    with edit_sites(model, [(site, fn)]):
        return model_logits(model, ids)


def model_logits(model: LanguageModel, ids: Tensor) -> Tensor:
    return model.hf(input_ids=ids, use_cache=False).logits.float()  # (B, T, vocab)


def summed_nll(logprobs: Tensor, targets: Tensor, scored: Tensor) -> Tensor:
    """Summed next-token cross-entropy over scored positions."""
    nll = -logprobs[:, :-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return nll[scored].sum()


def _broadcast(mean: Tensor, x: Tensor) -> Tensor:
    return mean.to(x).expand_as(x)


def _record_mean(x: Tensor, keep: Tensor, out: Tensor) -> None:
    out.copy_(x[keep.to(x.device)].float().mean(0).cpu())
