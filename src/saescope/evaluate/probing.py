"""k-sparse probing (Gurnee et al. 2023; SAEBench): how well the top-k SAE latents alone predict
a label, next to a probe on the raw activations.

For each label the k latents with the largest absolute difference of mean activation between
the positive and negative training examples are kept, and an L2-regularised logistic probe is
fitted on just those columns; accuracy is measured on held-out examples. The labels come from
the default corpus without any download: ``source`` (a Wikipedia summary or a Gutenberg passage,
one example per document, activations mean-pooled over its tokens) and ``quote`` (a token of a
Gutenberg passage inside or outside double quotation marks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae import SAE

KS = (1, 2, 5, 20)
"""The k of SAEBench's sparse probing (and of the issue that asked for it)."""


def fit_logistic(
    X: Tensor, y: Tensor, n_classes: int = 2, l2: float = 1e-3, steps: int = 100
) -> tuple[Tensor, Tensor]:
    """A multinomial logistic probe on standardised ``X`` (N, d) for labels ``y`` (N,) in
    ``[0, n_classes)``: (weights (d, C), bias (C,)) that act on raw ``X``. LBFGS, deterministic."""
    X = X.double()
    mean, std = X.mean(0), X.std(0).clamp_min(1e-6)
    Xs = (X - mean) / std  # (N, d)
    W = torch.zeros(X.shape[1], n_classes, dtype=X.dtype, requires_grad=True)
    b = torch.zeros(n_classes, dtype=X.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Xs @ W + b, y) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    W_raw = (W / std[:, None]).detach()
    return W_raw.float(), (b - mean @ W_raw).detach().float()


def probe_accuracy(X_train: Tensor, y_train: Tensor, X_test: Tensor, y_test: Tensor) -> float:
    """Held-out accuracy of a binary logistic probe."""
    W, b = fit_logistic(X_train, y_train.long())
    return float(((X_test.float() @ W + b).argmax(-1) == y_test.long()).float().mean())


def top_latents(Z: Tensor, y: Tensor, k: int, signed: bool = False) -> Tensor:
    """(k,) the latents of ``Z`` (N, d_sae) whose mean differs most between ``y`` 1 and 0:
    in absolute value, or with ``signed`` only those more active where ``y`` is 1."""
    y = y.bool()
    diff = Z[y].mean(0) - Z[~y].mean(0)
    return (diff if signed else diff.abs()).topk(min(k, Z.shape[1])).indices


def sparse_probe_accuracies(
    Z: Tensor, y: Tensor, train: Tensor, ks: Sequence[int] = KS
) -> dict[int, float]:
    """Held-out accuracy of a probe on the top-k latents of ``Z`` (N, d_sae), chosen on the
    ``train`` rows (bool (N,)), for each k."""
    out = {}
    for k in ks:
        keep = top_latents(Z[train], y[train], k)
        out[k] = probe_accuracy(Z[train][:, keep], y[train], Z[~train][:, keep], y[~train])
    return out


@dataclass(frozen=True)
class ProbeTask:
    """One label: inputs (raw activations and SAE latents) and the label, with the split."""

    name: str
    acts: Tensor
    """(N, d_in) raw activations."""
    labels: Tensor
    """(N,) 0 or 1."""
    train: Tensor
    """(N,) bool: the rows probes are fitted on (the rest are held out)."""


def check_task(task: ProbeTask) -> None:
    n = len(task.labels)
    if n < 8 or task.labels.min() == task.labels.max():
        raise SaescopeError(
            f"probing task {task.name!r} needs at least 8 examples of both labels, found "
            f"{int(task.labels.sum())} positive of {n}; use a larger corpus or more tokens"
        )
    if task.train.all() or not task.train.any():
        raise SaescopeError(f"probing task {task.name!r} has an empty train or test split")


def sparse_probing(sae: SAE, tasks: Sequence[ProbeTask], ks: Sequence[int] = KS) -> dict:
    """Per task: the raw-activation probe's accuracy and the k-sparse probes' on SAE latents."""
    out: dict[str, Any] = {}
    for task in tasks:
        check_task(task)
        with torch.no_grad():
            Z = sae.encode_dense(task.acts)  # (N, d_sae)
        tr, y = task.train, task.labels
        out[task.name] = {
            "examples": len(y),
            "positive": float(y.float().mean()),
            "raw": probe_accuracy(task.acts[tr], y[tr], task.acts[~tr], y[~tr]),
            "sparse": {str(k): a for k, a in sparse_probe_accuracies(Z, y, tr, ks).items()},
        }
    return out


def _split(n: int, generator: torch.Generator, test_fraction: float = 0.3) -> Tensor:
    train = torch.ones(n, dtype=torch.bool)
    train[torch.randperm(n, generator=generator)[: max(1, int(n * test_fraction))]] = False
    return train


def corpus_tasks(
    model: Any, site: str, documents: int = 100, tokens: int = 64, seed: int = 0
) -> list[ProbeTask]:
    """The ``source`` and ``quote`` tasks from the default corpus at ``site`` of ``model``
    (a ``LanguageModel``): ``documents`` of each source, the first ``tokens`` tokens of each.

    ``source`` pools each document's activations (mean over its tokens after BOS); SAE latents
    are then those of the pooled vector, the same for raw and SAE probes. ``quote`` labels
    each Gutenberg token by whether an odd number of ``"`` precede it in the passage."""
    from saescope.data.corpus import gutenberg_books, wikipedia_summaries
    from saescope.models.hooks import run_with_cache

    g = torch.Generator().manual_seed(seed)
    wiki, books = wikipedia_summaries(), gutenberg_books()
    pick = [
        [docs[i] for i in torch.randperm(len(docs), generator=g)[:documents].tolist()]
        for docs in (wiki, books)
    ]
    tok = model.tokenizer
    name = model.site(site).name
    pooled, source, quote_acts, quoted = [], [], [], []
    for label, docs in enumerate(pick):
        for text in docs:
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"][: tokens - 1]
            offsets = enc["offset_mapping"][: tokens - 1]
            bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
            with torch.no_grad():
                acts = run_with_cache(model, torch.tensor([bos + ids]), [site])[name][0]
            acts = acts[len(bos) :].float()  # (T, d)
            pooled.append(acts.mean(0))
            source.append(label)
            if label == 1:  # inside a quotation: an odd count of '"' before the token starts
                quote_acts.append(acts)
                quoted += [text[:start].count('"') % 2 for start, _ in offsets]
    y_quote = torch.tensor(quoted)
    q_acts = torch.cat(quote_acts)
    return [
        ProbeTask("source", torch.stack(pooled), torch.tensor(source), _split(len(source), g)),
        ProbeTask("quote", q_acts, y_quote, _split(len(y_quote), g)),
    ]
