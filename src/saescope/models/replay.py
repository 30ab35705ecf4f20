"""Re-running only the layers after a site, from what one clean forward recorded.

Spliced-loss evaluation runs the model several times per batch with one site edited differently
each time (the SAE's reconstruction, zero, the mean). Everything before the site is the same in
every run, so the clean forward records what the decoder layers from the site onward receive: the
residual stream where the replay starts, and every other argument each of those layers got
(attention masks and position embeddings, which differ per layer in Gemma 2/3's sliding-window
and global layers, position ids, ...). An edited run then re-runs only those layers, with the
site edited exactly as a hook would edit it in a full forward, and the model's own head
(``models.forward.unembed``: final norm, unembedding, Gemma's logit soft-capping).

The recording is checked as it is made: each re-run layer is called once, receives exactly the
previous layer's output, the final norm receives the last layer's output, and no KV cache is in
play. A model whose forward does anything else between its layers gives no ``Prefix``, and the
caller falls back to full forwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor
from torch.utils.hooks import RemovableHandle
from transformers.cache_utils import Cache

from saescope.models.forward import final_norm, hidden_of, unembed
from saescope.models.hooks import SiteFn, edit_sites
from saescope.models.model import LanguageModel
from saescope.models.sites import Site


@dataclass(frozen=True)
class LayerCall:
    """The arguments one decoder layer received, less its hidden state."""

    args: tuple[Any, ...]
    """Positional arguments after the hidden state (GPT-2 passes its mask positionally)."""
    kwargs: dict[str, Any]
    """Keyword arguments: masks, position embeddings, position ids, ..."""
    hidden_as_kwarg: bool
    """Whether the hidden state came as ``hidden_states=`` rather than first positional."""


@dataclass(frozen=True)
class Prefix:
    """What a clean forward computed up to ``site``: enough to re-run the rest with it edited."""

    site: Site
    start: int
    """The first layer to re-run: the site's layer, or the next one for ``resid_post``."""
    entry: Tensor
    """(B, T, d) the residual stream entering layer ``start``."""
    calls: tuple[LayerCall, ...]
    """What each layer from ``start`` to the last received besides its hidden state."""


def _has_cache(call: LayerCall) -> bool:
    return any(isinstance(v, Cache) for v in (*call.args, *call.kwargs.values()))


@dataclass
class Recording:
    """Filled by the hooks of ``record_prefix`` during one forward."""

    site: Site
    start: int
    entry: Tensor | None = None
    calls: list[LayerCall] = field(default_factory=list)
    last: Tensor | None = None
    """The most recent layer output, which the next layer (or the final norm) must receive."""
    ok: bool = True
    done: bool = False

    def prefix(self) -> Prefix | None:
        """The recorded prefix, or None if the forward did not go as a replay would."""
        if not (self.ok and self.done) or self.entry is None:
            return None
        return Prefix(self.site, self.start, self.entry, tuple(self.calls))

    def on_layer_input(self, i: int, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs.get("hidden_states")
        if not isinstance(hidden, Tensor) or len(self.calls) != i - self.start:
            self.ok = False
            return
        if i == self.start and self.site.kind != "resid_post":
            self.entry = hidden
        elif hidden is not self.last:
            self.ok = False
        kwargs = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        call = LayerCall(tuple(args[1:]), kwargs, hidden_as_kwarg=not args)
        self.ok &= not _has_cache(call)
        self.calls.append(call)

    def on_layer_output(self, i: int, output: Any) -> None:
        self.last = hidden_of(output)
        if i == self.site.layer and self.site.kind == "resid_post":
            self.entry = self.last

    def on_norm_input(self, hidden: Any) -> None:
        self.ok &= not self.done and hidden is self.last
        self.done, self.last = True, None


@contextmanager
def record_prefix(model: LanguageModel, site: Site) -> Iterator[Recording]:
    """Record, during the forward run inside the block, what ``replay_logits`` needs for ``site``.

    The hooks only read; they are removed on leaving the block, exception or not. Enter this after
    any other hooks of the same forward so that it sees the values the next layer really gets.
    """
    layers = model.layers
    start = site.layer + 1 if site.kind == "resid_post" else site.layer
    recording = Recording(site, start)
    handles: list[RemovableHandle] = []

    def on_input(i: int) -> Any:
        return lambda _m, args, kwargs: recording.on_layer_input(i, args, kwargs)

    def on_output(i: int) -> Any:
        return lambda _m, _args, output: recording.on_layer_output(i, output)

    try:
        for i in range(site.layer, len(layers)):
            if i >= start:
                handles.append(layers[i].register_forward_pre_hook(on_input(i), with_kwargs=True))
            handles.append(layers[i].register_forward_hook(on_output(i)))
        handles.append(
            final_norm(model).register_forward_pre_hook(
                lambda _m, args: recording.on_norm_input(args[0] if args else None)
            )
        )
        yield recording
    finally:
        for handle in handles:
            handle.remove()
    recording.ok &= len(recording.calls) == len(layers) - start


def replay_logits(model: LanguageModel, prefix: Prefix, fn: SiteFn) -> Tensor:
    """Logits (B, T, vocab) of the recorded forward with ``fn`` at the prefix's site, as
    ``edit_sites(model, [(site, fn)])`` around a full forward would give them."""
    site = prefix.site
    if site.kind in ("resid_pre", "resid_post"):
        edited = fn(prefix.entry)  # what the site's hook would do to the layer's input/output
        return _run_suffix(model, prefix, prefix.entry if edited is None else edited)
    with edit_sites(model, [(site, fn)]):  # a sub-layer site: its hook fires inside layer L
        return _run_suffix(model, prefix, prefix.entry)


def _run_suffix(model: LanguageModel, prefix: Prefix, hidden: Tensor) -> Tensor:
    layers = model.layers
    for i, call in enumerate(prefix.calls, start=prefix.start):
        if call.hidden_as_kwarg:
            out = layers[i](*call.args, hidden_states=hidden, **call.kwargs)
        else:
            out = layers[i](hidden, *call.args, **call.kwargs)
        hidden = hidden_of(out)  # (B, T, d)
    return unembed(model, hidden)  # (B, T, vocab), float32
