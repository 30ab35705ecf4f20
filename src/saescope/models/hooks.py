"""Reading and editing activations at hook sites, through torch hooks that never outlive a block.

Every hook is registered inside a context manager and removed in ``finally``: an exception in the
forward pass (or in user code inside the ``with``) leaves the model exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from saescope.errors import SaescopeError
from saescope.models.forward import hidden_of, with_hidden
from saescope.models.model import LanguageModel
from saescope.models.sites import Site

SiteFn = Callable[[Tensor], Tensor | None]
"""Called with the value at a site, shape (B, T, d); a returned tensor replaces that value."""


class _StopForward(Exception):
    """Raised by the stop hook once every requested site has been computed."""


def _pre_hook(fn: SiteFn) -> Callable[..., Any]:
    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        if args:
            new = fn(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        new = fn(kwargs["hidden_states"])
        return None if new is None else (args, {**kwargs, "hidden_states": new})

    return hook


def _post_hook(fn: SiteFn) -> Callable[..., Any]:
    def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
        new = fn(hidden_of(output))
        return None if new is None else with_hidden(output, new)

    return hook


def _pairs(fns: Mapping[str | Site, SiteFn] | Iterable[tuple[str | Site, SiteFn]]) -> list:
    return list(fns.items()) if isinstance(fns, Mapping) else list(fns)


@contextmanager
def edit_sites(
    model: LanguageModel,
    fns: Mapping[str | Site, SiteFn] | Iterable[tuple[str | Site, SiteFn]],
) -> Iterator[None]:
    """Run ``fn(value)`` at each site on every forward pass inside the block.

    Several functions may share a site; they run in the order given, each seeing the previous
    one's result. This is the primitive under capture, splicing and steering.
    """
    handles: list[RemovableHandle] = []
    try:
        for name, fn in _pairs(fns):
            module, where = model.module_for(model.site(name))
            if where == "input":
                handles.append(module.register_forward_pre_hook(_pre_hook(fn), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(_post_hook(fn)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_sites(
    model: LanguageModel, sites: Iterable[str | Site], stop: bool = False
) -> Iterator[dict[str, Tensor]]:
    """Record the value at each site into the yielded dict (keyed by ``Site.name``).

    Every forward pass inside the block records (a later one overwrites an earlier one's values).
    With ``stop=True`` each ``model.hf(...)`` call inside the block is cut short after the deepest
    site, so later layers and the unembedding are never computed, and returns ``None``; the rest
    of the block runs as usual. The cut is an exception raised inside the forward and caught
    around ``model.hf``'s own ``forward``; a forward reached another way (``model.hf.generate``,
    a submodule called directly) cannot return early, and raises ``SaescopeError``.
    """
    parsed = sorted({model.site(s) for s in sites})
    if not parsed:
        raise SaescopeError("capture_sites needs at least one site, got none")
    store: dict[str, Tensor] = {}

    def recorder(site: Site) -> SiteFn:
        def record(value: Tensor) -> None:
            store[site.name] = value.detach()

        return record

    with (
        edit_sites(model, [(site, recorder(site)) for site in parsed]),
        _stopping_after(model, parsed[-1]) if stop else nullcontext(),
    ):
        try:
            yield store
        except _StopForward:
            raise SaescopeError(
                f"capture_sites(stop=True) stopped a forward pass at {parsed[-1].name} that was "
                "not a call of model.hf itself (generate, or a submodule called directly), so "
                "it could not return early and the rest of the block was skipped; call "
                "model.hf(...) inside the block, or pass stop=False"
            ) from None


@contextmanager
def _stopping_after(model: LanguageModel, deepest: Site) -> Iterator[None]:
    """Inside the block, ``model.hf(...)`` stops after ``deepest`` and returns None."""

    def stop(*_: Any) -> None:
        raise _StopForward

    layer = model.layers[deepest.layer]
    if deepest.kind == "resid_pre":
        handle = layer.register_forward_pre_hook(stop)
    else:
        handle = layer.register_forward_hook(stop)  # after every sub-site of the layer has fired
    hf = model.hf
    shadowed = vars(hf).get("forward")  # an enclosing capture's wrapper, if any
    inner = hf.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        try:
            return inner(*args, **kwargs)
        except _StopForward:
            return None

    # An instance attribute shadows the class's forward for nn.Module.__call__ and nothing else.
    hf.forward = forward
    try:
        yield
    finally:
        handle.remove()
        if shadowed is None:
            del hf.forward
        else:
            hf.forward = shadowed


@torch.inference_mode()
def run_with_cache(
    model: LanguageModel,
    input_ids: Tensor,
    sites: Iterable[str | Site],
    attention_mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """Activations at ``sites`` for a batch of token ids (B, T), stopping after the deepest site."""
    with capture_sites(model, sites, stop=True) as store:
        model.hf(
            input_ids=input_ids.to(model.device),
            attention_mask=None if attention_mask is None else attention_mask.to(model.device),
            use_cache=False,
        )
    return store
