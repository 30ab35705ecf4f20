"""Steering vectors (Turner et al. 2023, "Activation Addition") and their SAE decomposition.

A contrastive steering vector is the difference of a site's activations between two prompts
("Anger" vs "Calm"), added back with a coefficient through ``VectorIntervention``. Two ways of
lining the prompts up:

- ``reduce="mean"`` (the default, as GDM's steering comparisons use): the mean over each prompt's
  ordinary tokens (BOS and other special tokens excluded), averaged over the prompts given, then
  positive minus negative: one (d,) vector, added at every selected position;
- ``reduce="aligned"`` (ActAdd as published): per token position, the shorter prompt padded on
  the right with a filler token (a space) to the longer one's length: a (P, d) vector whose row p
  is added at token index p of the prompt being steered (row 0, BOS, is zero when both have one);
- ``reduce="last"``: the last token's activation difference.

An SAE says what a vector is made of: ``decompose`` writes it as a sparse combination of decoder
rows, v ~ sum_i c_i W_dec[i], picking rows greedily (orthogonal matching pursuit: the row most
aligned with the residual, then a least-squares refit of every coefficient so far) or by the
SAE's own encoder (the k largest |v @ W_enc|, then the same least-squares fit).

A vector travels as a ``SteeringVector``: the tensor, the site it was taken at and how it was
made, saved as one safetensors file (``save_vector`` / ``load_vector``) that ``saescope steer
--vector`` and ``saescope frontier`` read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor

from saescope import __version__
from saescope._files import write_atomic
from saescope._sites import Site
from saescope.activations.extract import site_rows
from saescope.errors import SaescopeError
from saescope.models import LanguageModel, run_with_cache
from saescope.sae import SAE, sae_site

REDUCTIONS = ("mean", "aligned", "last")


@torch.inference_mode()
def contrastive_vector(
    model: LanguageModel,
    site: str,
    positive: str | Sequence[str],
    negative: str | Sequence[str],
    reduce: str = "mean",
    filler: str = " ",
) -> Tensor:
    """The activation difference at ``site`` between ``positive`` and ``negative`` prompts:
    (d,) for ``mean`` and ``last``, (P, d) for ``aligned`` (see the module docstring)."""
    pos = [positive] if isinstance(positive, str) else list(positive)
    neg = [negative] if isinstance(negative, str) else list(negative)
    if reduce not in REDUCTIONS:
        raise SaescopeError(f"unknown reduce {reduce!r}; expected one of {', '.join(REDUCTIONS)}")
    if not pos or not neg:
        raise SaescopeError("a contrastive vector needs at least one prompt on each side")
    if reduce == "aligned":
        if len(pos) != len(neg):
            raise SaescopeError(
                f"aligned vectors pair prompts one to one: {len(pos)} positive, {len(neg)} negative"
            )
        ids = _aligned_ids(model, pos + neg, filler)  # (2n, P)
        acts = run_with_cache(model, ids, [site])[site].float().cpu()  # (2n, P, d)
        return acts[: len(pos)].mean(0) - acts[len(pos) :].mean(0)
    return _pooled(model, site, pos, reduce) - _pooled(model, site, neg, reduce)


def _pooled(model: LanguageModel, site: str, prompts: list[str], reduce: str) -> Tensor:
    """Mean over prompts of each prompt's token-mean (or last-token) activation: (d,)."""
    rows = []
    name = model.site(site).name
    for prompt in prompts:
        ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]  # (1, T)
        acts = site_rows(model, ids, [name], dtype=torch.float32, device="cpu").acts[name]  # (N, d)
        if not len(acts):
            raise SaescopeError(f"prompt {prompt!r} has no ordinary tokens")
        rows.append(acts.mean(0) if reduce == "mean" else acts[-1])
    return torch.stack(rows).mean(0)


def _aligned_ids(model: LanguageModel, prompts: list[str], filler: str) -> Tensor:
    fill = model.tokenizer(filler, add_special_tokens=False)["input_ids"]
    if len(fill) != 1:
        raise SaescopeError(f"filler {filler!r} is {len(fill)} tokens; expected one")
    ids = [model.tokenizer(p)["input_ids"] for p in prompts]
    length = max(len(i) for i in ids)
    return torch.tensor([i + fill * (length - len(i)) for i in ids])  # (n, P)


@dataclass(frozen=True)
class Decomposition:
    """A vector written as sum_i coefficients[i] * W_dec[features[i]] + residual."""

    features: Tensor
    """(k,) latent ids, in the order they were picked."""
    coefficients: Tensor
    """(k,) least-squares coefficients of their decoder rows."""
    contributions: Tensor
    """(k,) c_i <W_dec[i], v> / |v|^2: each feature's share of the vector; they sum to
    ``explained``."""
    explained: float
    """1 - |v - v_hat|^2 / |v|^2."""
    cumulative: Tensor | None = None
    """(k,) the fraction of |v|^2 explained by the first j+1 features picked (refit by least
    squares on them): how much of the vector the top few already are. Ends at ``explained``."""

    def top(self, n: int = 10) -> list[tuple[int, float, float]]:
        """(feature, coefficient, contribution), largest contribution first."""
        order = self.contributions.abs().argsort(descending=True)[:n]
        return [
            (int(self.features[i]), float(self.coefficients[i]), float(self.contributions[i]))
            for i in order
        ]


@torch.no_grad()
def decompose(vector: Tensor, sae: SAE, k: int = 10, method: str = "omp") -> Decomposition:
    """Write ``vector`` (d,) as ``k`` SAE decoder rows (``omp`` or ``encoder``; see above)."""
    v = _check(vector, sae).float()
    if v.dim() != 1:
        raise SaescopeError(f"decompose takes one vector (d,), got {tuple(v.shape)}")
    W = sae.W_dec.detach().float()  # (n, d)
    if method == "encoder":
        chosen = (v @ sae.W_enc.detach().float()).abs().topk(k).indices.tolist()
        coef = _lstsq(W[chosen], v)
    elif method == "omp":
        unit = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
        chosen, residual = [], v
        coef = v.new_zeros(0)
        for _ in range(k):
            scores = (unit @ residual).abs()  # (n,)
            scores[chosen] = -1
            chosen.append(int(scores.argmax()))
            coef = _lstsq(W[chosen], v)
            residual = v - coef @ W[chosen]
    else:
        raise SaescopeError(f"unknown method {method!r}; expected omp or encoder")
    approx = coef @ W[chosen]  # (d,)
    norm2 = v.dot(v).clamp_min(1e-30)
    contributions = coef * (W[chosen] @ v) / norm2
    explained = float(1 - (v - approx).pow(2).sum() / norm2)
    cumulative = torch.stack(
        [
            1 - (v - _lstsq(W[chosen[:j]], v) @ W[chosen[:j]]).pow(2).sum() / norm2
            for j in range(1, len(chosen) + 1)
        ]
    )
    return Decomposition(torch.tensor(chosen), coef, contributions, explained, cumulative)


def feature_vector(sae: SAE, weights: Mapping[int, float]) -> Tensor:
    """sum_i weights[i] * W_dec[i]: a steering vector built from chosen features, (d,)."""
    if not weights:
        raise SaescopeError("feature_vector needs at least one feature")
    _check_ids(sae, list(weights))
    ids = torch.tensor(list(weights))
    coef = torch.tensor(list(weights.values()), dtype=torch.float32)
    return coef @ sae.W_dec.detach().float()[ids]


def project_out(vector: Tensor, sae: SAE, features: Sequence[int]) -> Tensor:
    """``vector`` (d,) or (P, d) minus its orthogonal projection onto the span of the features'
    decoder rows: what is left once those features are removed."""
    v = _check(vector, sae).float()
    _check_ids(sae, features)
    rows = sae.W_dec.detach().float()[list(features)]  # (F, d)
    flat = v.reshape(-1, v.shape[-1])  # (P, d)
    coef = torch.linalg.lstsq(rows.t(), flat.t()).solution  # (F, P)
    return (flat - (rows.t() @ coef).t()).reshape(v.shape)


def feature_part(vector: Tensor, sae: SAE, features: Sequence[int]) -> Tensor:
    """The part of ``vector`` (d,) or (P, d) in the span of the features' decoder rows (what
    ``project_out`` removes), each row rescaled to the norm of the vector's row: the features
    alone, at the strength of the vector. Rows with no component there stay zero."""
    v = _check(vector, sae).float()
    part = (v - project_out(v, sae, features)).reshape(-1, v.shape[-1])  # (P, d)
    norms = part.norm(dim=1, keepdim=True)  # (P, 1)
    scale = torch.where(
        norms > 1e-6 * v.reshape(-1, v.shape[-1]).norm(dim=1, keepdim=True).clamp_min(1e-30),
        v.reshape(-1, v.shape[-1]).norm(dim=1, keepdim=True) / norms.clamp_min(1e-30),
        torch.zeros_like(norms),
    )
    return (part * scale).reshape(v.shape)


def flat(vector: Tensor) -> Tensor:
    """One (d,) direction for a vector: itself, or the sum of an aligned vector's rows (the
    total it adds over the prompt), which is what ``decompose`` is given for an aligned one."""
    return vector if vector.dim() == 1 else vector.sum(0)


def _lstsq(rows: Tensor, v: Tensor) -> Tensor:
    """argmin_c |c @ rows - v|: (F,) for rows (F, d), v (d,)."""
    return torch.linalg.lstsq(rows.t(), v.unsqueeze(1)).solution.squeeze(1)


def _check(vector: Tensor, sae: SAE) -> Tensor:
    if vector.shape[-1] != sae.cfg.d_in:
        raise SaescopeError(
            f"SAE expects d_in={sae.cfg.d_in}, the vector has {vector.shape[-1]}; "
            "was it taken at another site?"
        )
    return vector.detach().to(sae.W_dec.device)


def _check_ids(sae: SAE, features: Sequence[int]) -> None:
    bad = [f for f in features if not 0 <= f < sae.cfg.d_sae]
    if bad:
        raise SaescopeError(f"the SAE has {sae.cfg.d_sae} latents; got {bad}")


FORMAT = "saescope.steering_vector/1"
"""The ``format`` entry of a vector file's metadata; a file without it is refused."""


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """A steering vector and where it belongs."""

    vector: Tensor
    """(d,) added at every selected position, or (P, d) aligned: row p at token index p."""
    site: str
    """The hook site it was taken at and is added at, e.g. ``layers.6.resid_post``."""
    model: str = ""
    """The model it was taken from (its name as loaded)."""
    reduce: str = "mean"
    """How the prompts were lined up: ``mean``, ``aligned`` or ``last`` (see the module)."""
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.vector.dim() not in (1, 2) or self.vector.shape[-1] == 0:
            raise SaescopeError(
                f"a steering vector is (d,) or (positions, d); got {tuple(self.vector.shape)}"
            )
        if not bool(self.vector.isfinite().all()):
            raise SaescopeError("the steering vector has nan or inf entries")
        if self.reduce not in REDUCTIONS:
            raise SaescopeError(
                f"unknown reduce {self.reduce!r}; expected one of {', '.join(REDUCTIONS)}"
            )
        Site.parse(self.site)  # a name no model has fails here, with the spellings accepted

    def check(self, model: LanguageModel, source: str | Path = "the vector") -> None:
        """Refuse a vector whose site ``model`` lacks or whose width differs from the site's."""
        site = model.site(self.site)
        width = model.site_dim(site)
        if self.vector.shape[-1] != width:
            raise SaescopeError(
                f"{source}: the vector has width {self.vector.shape[-1]}, {site.name} of "
                f"{model.name} has width {width}; was it taken from another model "
                f"({self.model or 'unrecorded'})?"
            )

    def check_sae(self, sae: SAE, source: str | Path = "the SAE") -> None:
        """Refuse an SAE trained at another site than the vector's: its decoder rows would be
        directions of another space."""
        trained_at = sae_site(sae, source if isinstance(source, Path) else None)
        if Site.parse(trained_at).name != Site.parse(self.site).name:
            raise SaescopeError(
                f"{source} was trained at {trained_at}, the vector was taken at {self.site}; "
                f"use an SAE of {self.site} or make the vector at {trained_at}"
            )
        _check(self.vector, sae)


def save_vector(vector: SteeringVector, path: str | Path) -> Path:
    """Write ``vector`` as one safetensors file (tensor ``vector``, the rest as metadata)."""
    meta = {
        "format": FORMAT,
        "site": vector.site,
        "model": vector.model,
        "reduce": vector.reduce,
        "shape": json.dumps(list(vector.vector.shape)),
        "positive": json.dumps(list(vector.positive)),
        "negative": json.dumps(list(vector.negative)),
        "saescope_version": __version__,
    }
    out = Path(path)
    data = save({"vector": vector.vector.detach().float().cpu().contiguous()}, metadata=meta)
    write_atomic(out, data)
    return out


def load_vector(
    path: str | Path, model: LanguageModel | None = None, site: str | None = None
) -> SteeringVector:
    """Read a file ``save_vector`` wrote. With ``model``: check the site exists there and has
    the vector's width; with ``site``: check it is the site the vector was taken at."""
    path = Path(path)
    if not path.is_file():
        raise SaescopeError(f"no steering vector file at {path}; make one with `saescope vector`")
    redo = "write it again with `saescope vector`"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensor = f.get_tensor("vector") if "vector" in f.keys() else None  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise SaescopeError(
            f"{path} is not a readable safetensors file ({err}): truncated or not a vector; {redo}"
        ) from err
    if meta.get("format") != FORMAT or tensor is None:
        raise SaescopeError(
            f"{path} is not a saescope steering vector (metadata format "
            f"{meta.get('format')!r}, tensors: {'vector' if tensor is not None else 'no vector'}"
            f"; expected format {FORMAT!r} and a tensor named 'vector'); {redo}"
        )
    try:
        shape = json.loads(meta["shape"])
        vector = SteeringVector(
            tensor,
            meta["site"],
            meta.get("model", ""),
            meta.get("reduce", "mean"),
            tuple(json.loads(meta.get("positive", "[]"))),
            tuple(json.loads(meta.get("negative", "[]"))),
        )
    except (KeyError, json.JSONDecodeError) as err:
        raise SaescopeError(
            f"{path}: metadata entry {err} is missing or unreadable; {redo}"
        ) from err
    if list(tensor.shape) != shape:
        raise SaescopeError(
            f"{path}: the metadata says shape {shape}, the tensor is {list(tensor.shape)}; {redo}"
        )
    if site is not None and Site.parse(site).name != Site.parse(vector.site).name:
        raise SaescopeError(
            f"{path} was taken at {vector.site}, not {site}; make a vector at {site} or use "
            f"{vector.site}"
        )
    if model is not None:
        vector.check(model, path)
    return vector
