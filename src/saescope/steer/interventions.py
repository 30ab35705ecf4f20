"""Interventions: edit SAE features, raw units (neurons) or add directions at hook sites.

An SAE feature edit keeps the SAE's error term by default. With latents z = encode(x) and the
edited latents z', the site's value becomes

    x' = x + (z' - z) @ W_dec                 (error term kept: the default)
    x' = decode(z') = x_hat + (z' - z) @ W_dec    (error_term=False: the model runs on the SAE)

The first form is computed as written, never as ``x_hat + (x - x_hat)``: when nothing changes
(no edit, coefficient 0, a clamp to the value the latent already has) z' - z is exactly zero and
so is the change to x, bit for bit. Only the latents being edited are read from z, and an ``add``
needs no encoding at all (z'_i = z_i + alpha adds alpha * W_dec[i]).

Operations (``Edit.op``), on latent or unit i with value v:
    clamp   i := v        scale   i := i * v
    add     i := i + v    ablate  i := 0

A transcoder's latents are read from its input site and the edit is written at its output site
(z = encode(x_in), and y, y_hat at the output site in place of x, x_hat above):

    y' = y + (z' - z) @ W_dec                 (error term kept)
    y' = transcoder(x_in) + (z' - z) @ W_dec  (error_term=False: the model runs on it)

Every intervention takes ``Positions`` (which tokens; special tokens excluded by default, see
``positions``). ``intervene(model, [...])`` applies any number of them, at any sites, in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.models import LanguageModel, Site, edit_sites
from saescope.models.hooks import SiteFn
from saescope.sae import SAE, sae_site, sae_site_out
from saescope.steer.ops import OPS
from saescope.steer.positions import ALL, Positions, PositionTracker, track_positions


@dataclass(frozen=True)
class Edit:
    """One operation on one latent (SAE feature) or unit (neuron / dimension)."""

    index: int
    op: str
    """One of ``clamp``, ``add``, ``scale``, ``ablate``."""
    value: float = 0.0
    """The clamp value, the amount added, or the scale factor (ignored by ``ablate``)."""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise SaescopeError(f"unknown edit {self.op!r}; expected one of {', '.join(OPS)}")
        if self.index < 0:
            raise SaescopeError(f"latent / unit index must be >= 0, got {self.index}")
        if not math.isfinite(self.value):
            raise SaescopeError(
                f"{self.op} {self.index}: the value must be a finite number, got {self.value} "
                "(a nan or inf latent makes every later activation and probability nan)"
            )

    def apply(self, current: Tensor) -> Tensor:
        """The edited values given the current ones (any shape)."""
        if self.op == "clamp":
            return torch.full_like(current, self.value)
        if self.op == "add":
            return current + self.value
        if self.op == "scale":
            return current * self.value
        return torch.zeros_like(current)

    @classmethod
    def parse(cls, text: str, op: str) -> Edit:
        """``"8249=100"`` (``"8249"`` for ablate) -> Edit(8249, op, 100.0)."""
        index, sep, value = text.partition("=")
        expected = "INDEX, e.g. 8249" if op == "ablate" else "INDEX=VALUE, e.g. 8249=100"
        if (op == "ablate") == bool(sep):
            raise SaescopeError(f"cannot read {op} {text!r}: expected {expected}")
        try:
            return cls(int(index), op, float(value) if sep else 0.0)
        except ValueError as err:
            raise SaescopeError(f"cannot read {op} {text!r}: expected {expected}") from err


def clamp(index: int, value: float) -> Edit:
    return Edit(index, "clamp", value)


def add(index: int, value: float) -> Edit:
    return Edit(index, "add", value)


def scale(index: int, value: float) -> Edit:
    return Edit(index, "scale", value)


def ablate(index: int) -> Edit:
    return Edit(index, "ablate")


class Intervention(Protocol):
    """Anything ``intervene`` can apply: a site and a function of the site's value."""

    def site(self, model: LanguageModel) -> Site: ...

    def site_fn(self, model: LanguageModel, tracker: PositionTracker) -> SiteFn: ...


@dataclass(frozen=True, eq=False)
class FeatureIntervention:
    """Edits of SAE latents at the SAE's site (or ``at``)."""

    sae: SAE
    edits: tuple[Edit, ...]
    positions: Positions = ALL
    error_term: bool = True
    """Keep x - x_hat (exact identity when nothing changes); False: run on the reconstruction.
    With False, give all edits of one SAE in one intervention: each one splices the SAE in."""
    at: str | None = None
    """The hook site; default: the one in the SAE's metadata. For a transcoder, the site it
    writes (default: its output site); it reads its input site's value there."""

    def site(self, model: LanguageModel) -> Site:
        sae = self.sae
        default = sae_site_out(sae) if sae.cfg.is_transcoder else sae_site(sae)
        site = model.site(self.at if self.at is not None else default)
        checks = [(site, sae.cfg.out_dim, "d_out" if sae.cfg.is_transcoder else "d_in")]
        if sae.cfg.is_transcoder:
            checks.append((self.input_site(model), sae.cfg.d_in, "d_in"))
        for where, want, name in checks:
            width = model.site_dim(where)
            if width != want:
                raise SaescopeError(
                    f"SAE expects {name}={want}, {where.name} of {model.name} has width "
                    f"{width}; was it trained on another site or model?"
                )
        if sae.cfg.is_transcoder and site < self.input_site(model):
            raise SaescopeError(
                f"a transcoder cannot write {site.name}, which the forward pass reaches before "
                f"its input site {self.input_site(model).name}"
            )
        bad = [e.index for e in self.edits if e.index >= self.sae.cfg.d_sae]
        if bad:
            raise SaescopeError(
                f"the SAE has {self.sae.cfg.d_sae} latents (0..{self.sae.cfg.d_sae - 1}); "
                f"asked to edit {bad}"
            )
        return site

    def input_site(self, model: LanguageModel) -> Site:
        """Where the latents are read: a transcoder's input site, else the site itself."""
        if self.sae.cfg.is_transcoder:
            return model.site(sae_site(self.sae))
        return self.site(model)

    def hooks(self, model: LanguageModel, tracker: PositionTracker) -> list[tuple[Site, SiteFn]]:
        """(site, function) pairs to register, in order: for a transcoder a recorder of its
        input site comes before the edit of its output site."""
        if not self.sae.cfg.is_transcoder:
            return [(self.site(model), self.site_fn(model, tracker))]
        seen: dict[str, Tensor] = {}

        def record(x: Tensor) -> None:
            seen["x"] = x

        site = self.site(model)
        return [(self.input_site(model), record), (site, self.site_fn(model, tracker, seen))]

    def site_fn(
        self, model: LanguageModel, tracker: PositionTracker, seen: dict[str, Tensor] | None = None
    ) -> SiteFn:
        """The edit at the site; a transcoder reads its input from ``seen["x"]``, which the
        recorder of ``hooks`` fills earlier in the same forward pass."""

        def fn(x: Tensor) -> Tensor | None:  # (B, T, d)
            keep = tracker.mask(self.positions)  # (B, T)
            if not keep.any():
                return None
            device = self.sae.W_dec.device
            rows = x[keep].to(device, torch.float32)  # (N, d)
            source = None
            if seen is not None:
                source = seen["x"][keep.to(seen["x"].device)].to(device, torch.float32)
            out = x.clone()
            out[keep] = self.edited(rows, source).to(x.device, x.dtype)
            return out

        return fn

    @torch.no_grad()
    def edited(self, x: Tensor, source: Tensor | None = None) -> Tensor:
        """The edited rows (N, d) for rows ``x`` (N, d): the maths in the module docstring.
        ``source``: a transcoder's input rows (N, d_in) at the same positions."""
        sae = self.sae
        if sae.cfg.is_transcoder and source is None:
            raise SaescopeError(
                "a transcoder's edit needs its input rows: register FeatureIntervention.hooks, "
                "which record the input site, or pass source="
            )
        inputs = x if source is None else source
        latents = None
        if not self.error_term or any(e.op != "add" for e in self.edits):
            latents = sae.encode(inputs)
        features = sorted({e.index for e in self.edits})
        column = {f: j for j, f in enumerate(features)}
        current = x.new_zeros(x.shape[0], len(features))  # (N, F) z_i of the edited latents
        if latents is not None:
            lookup = torch.full((sae.cfg.d_sae,), -1, dtype=torch.long, device=x.device)
            lookup[features] = torch.arange(len(features), device=x.device)
            cols = lookup[latents.indices]  # (nnz,) column of each active latent, -1: not edited
            hit = cols >= 0
            current[latents.rows[hit], cols[hit]] = latents.values[hit].to(x.dtype)
        new = current.clone()
        for edit in self.edits:
            j = column[edit.index]
            new[:, j] = edit.apply(new[:, j])
        delta = (new - current) @ sae.W_dec[features].to(x.dtype)  # (N, d)
        if self.error_term:
            return x + delta
        assert latents is not None
        skip = sae.skip_term(inputs)
        out = sae.decode(latents) + delta
        return out if skip is None else out + skip


@dataclass(frozen=True)
class UnitIntervention:
    """Edits of raw units of a site: neurons at ``layers.<i>.mlp_act``, or residual dimensions."""

    at: str
    edits: tuple[Edit, ...]
    positions: Positions = ALL

    def site(self, model: LanguageModel) -> Site:
        site = model.site(self.at)
        width = model.site_dim(site)
        bad = [e.index for e in self.edits if e.index >= width]
        if bad:
            raise SaescopeError(
                f"{site.name} has {width} units (0..{width - 1}); asked to edit {bad}"
            )
        return site

    def site_fn(self, model: LanguageModel, tracker: PositionTracker) -> SiteFn:
        def fn(x: Tensor) -> Tensor | None:  # (B, T, d)
            keep = tracker.mask(self.positions).unsqueeze(-1)  # (B, T, 1)
            if not keep.any():
                return None
            out = x.clone()
            for edit in self.edits:
                unit = out[..., edit.index : edit.index + 1]  # (B, T, 1)
                edited = edit.apply(unit.float()).to(x.dtype)
                out[..., edit.index : edit.index + 1] = torch.where(keep, edited, unit)
            return out

        return fn


@dataclass(frozen=True, eq=False)
class VectorIntervention:
    """Add ``coefficient * vector`` to the site's value (a steering vector, any direction).

    ``vector`` is (d,), added at every selected position, or (P, d): row p is added at token
    index p (p = 0 is BOS), as ActAdd aligns a contrastive prompt pair with the user's prompt.
    """

    at: str
    vector: Tensor
    coefficient: float = 1.0
    positions: Positions = ALL

    def site(self, model: LanguageModel) -> Site:
        site = model.site(self.at)
        width = model.site_dim(site)
        if self.vector.dim() not in (1, 2) or self.vector.shape[-1] != width:
            raise SaescopeError(
                f"{site.name} has width {width}; expected a vector ({width},) or "
                f"(positions, {width}), found {tuple(self.vector.shape)}"
            )
        if not (math.isfinite(self.coefficient) and bool(self.vector.isfinite().all())):
            raise SaescopeError(
                f"steering vector at {site.name}: the coefficient ({self.coefficient}) and every "
                "entry of the vector must be finite"
            )
        return site

    def site_fn(self, model: LanguageModel, tracker: PositionTracker) -> SiteFn:
        def fn(x: Tensor) -> Tensor | None:  # (B, T, d)
            keep = tracker.mask(self.positions)  # (B, T)
            vector = self.vector.to(x.device, torch.float32) * self.coefficient
            if vector.dim() == 2:  # aligned: row p at token index p
                pos = tracker.pos
                keep = keep & (pos >= 0) & (pos < vector.shape[0])
                vector = vector[pos.clamp(0, vector.shape[0] - 1)]  # (B, T, d)
            if not keep.any():
                return None
            steered = (x.float() + vector).to(x.dtype)
            return torch.where(keep.unsqueeze(-1), steered, x)

        return fn


@dataclass
class Intervened:
    """What ``intervene`` yields: the position tracker, for ``generate_with``."""

    tracker: PositionTracker
    sites: list[str] = field(default_factory=list)


@contextmanager
def intervene(
    model: LanguageModel,
    interventions: Sequence[Intervention],
    prompt_lengths: Tensor | None = None,
) -> Iterator[Intervened]:
    """Apply ``interventions`` on every forward pass of ``model.hf`` inside the block.

    Several interventions may share a site: they run in the order given, each on the previous
    one's result. Every hook is removed on exit, exception or not. ``prompt_lengths`` (B,): the
    real tokens per row of left-padded prompts when the block holds one ``generate`` call, so
    that positions are counted through it and ``Positions(prompt=False)`` knows what was
    generated (see ``positions``).
    """
    with track_positions(model) as tracker:
        tracker.prompt_lengths = prompt_lengths
        pairs: list[tuple[Site, Callable]] = []
        written: list[str] = []
        for i in interventions:
            if isinstance(i, FeatureIntervention):  # a transcoder also reads another site
                pairs.extend(i.hooks(model, tracker))
            else:
                pairs.append((i.site(model), i.site_fn(model, tracker)))
            written.append(pairs[-1][0].name)
        with edit_sites(model, pairs):
            yield Intervened(tracker, written)
