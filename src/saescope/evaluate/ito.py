"""Judging dictionaries by inference-time optimisation (GDM, "Replacing SAE Encoders with
Inference-Time Optimisation"): the L0 / quality frontier of each dictionary coded by a pursuit,
against the SAE's own encoder (one point) and its test-time top-k truncation, with a random
dictionary of the same shape as the floor; and ITO vs encoder activations of one feature."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from saescope._files import strict_json, write_atomic
from saescope.coding import EncoderSpec, with_encoder
from saescope.errors import SaescopeError
from saescope.evaluate.splice import spliced_stats
from saescope.models import LanguageModel
from saescope.sae import SAE, build_sae, sae_site

RANDOM = "random"
"""The name of the random baseline dictionary in the results."""


@dataclass(frozen=True)
class FrontierPoint:
    """One dictionary coded one way at one target L0."""

    dictionary: str
    coder: str
    """``gp``/``mp``/``omp`` (ITO), ``topk`` (the encoder truncated) or ``encoder`` (as trained)."""
    target_l0: int | None
    """The k asked for; None for the encoder as trained."""
    l0: float
    """Mean latents per row actually used."""
    fvu: float
    """Fraction of variance unexplained on the rows."""
    delta_loss: float | None = None
    """Next-token CE spliced minus clean (with a model)."""
    loss_recovered: float | None = None
    """(CE_zero - CE_spliced) / (CE_zero - CE_clean) (with a model)."""


Splice = Callable[[SAE], tuple[float, float | None]]
"""(delta loss, loss recovered) of an SAE spliced into the model."""


def random_dictionary(like: SAE, seed: int = 0) -> SAE:
    """An SAE of ``like``'s shape with random unit decoder rows and ``like``'s ``b_dec``."""
    sae = build_sae(like.cfg, seed=seed).to(like.W_dec.device)
    with torch.no_grad():
        sae.b_dec.copy_(like.b_dec)
    return sae.eval()


@torch.inference_mode()
def fvu_and_l0(sae: SAE, rows: Sequence[Tensor]) -> tuple[float, float]:
    """(FVU, mean L0) of ``sae`` on batches of rows (B, d_in)."""
    sse, total, count, n = 0.0, 0.0, 0.0, 0
    mean = torch.cat([r.float() for r in rows]).mean(0)
    for x in rows:
        x = x.float().to(sae.W_dec.device)
        out = sae(x)
        sse += float((out.x_hat.float() - x).pow(2).sum())
        total += float((x - mean.to(x.device)).pow(2).sum())
        count += float((out.latents.values != 0).sum())
        n += len(x)
    if n == 0:
        raise SaescopeError("no activation rows to code: the cache's held-out shards are empty")
    return sse / max(total, 1e-12), count / n


def frontier(
    saes: dict[str, SAE],
    rows: Sequence[Tensor],
    l0s: Sequence[int],
    method: str = "gp",
    splice: Splice | None = None,
    random_baseline: bool = True,
) -> list[FrontierPoint]:
    """For each dictionary: ``method`` ITO and top-k truncation at every L0 in ``l0s``, and its
    encoder as trained; a random dictionary of the first one's shape coded by ITO if
    ``random_baseline``. ``splice`` (see ``spliced_splice``) adds the losses."""
    if not saes:
        raise SaescopeError("the frontier needs at least one SAE")
    if method not in ("gp", "mp", "omp"):
        raise SaescopeError(f"the frontier's method must be gp, mp or omp, got {method!r}")
    bad = [k for k in l0s if k <= 0]
    if bad or not l0s:
        raise SaescopeError(f"target L0s must be positive integers, got {list(l0s)}")
    dictionaries = dict(saes)
    if random_baseline:
        dictionaries[RANDOM] = random_dictionary(next(iter(saes.values())))
    points = []

    def point(name: str, coder: str, k: int | None, sae: SAE) -> FrontierPoint:
        fvu, l0 = fvu_and_l0(sae, rows)
        delta, recovered = splice(sae) if splice is not None else (None, None)
        return FrontierPoint(name, coder, k, l0, fvu, delta, recovered)

    for name, sae in dictionaries.items():
        if name != RANDOM:
            points.append(point(name, "encoder", None, sae))
        for k in l0s:
            k = min(k, sae.cfg.d_sae)
            points.append(point(name, method, k, with_encoder(sae, EncoderSpec(method, k))))  # type: ignore[arg-type]
            if name != RANDOM:
                points.append(point(name, "topk", k, with_encoder(sae, EncoderSpec("topk", k))))
    return points


def spliced_splice(
    model: LanguageModel,
    batches: Sequence[Tensor],
    keep_fn: Callable[[Tensor], Tensor],
) -> Splice:
    """A ``Splice`` over token ``batches`` (B, T); the ablation losses are measured once."""
    zero: dict[str, float] = {}

    def run(sae: SAE) -> tuple[float, float | None]:
        stats = spliced_stats(model, sae, sae_site(sae), batches, keep_fn, ablations=not zero)
        if stats.ce_zero is not None:
            zero["ce"] = stats.ce_zero
        gap = zero["ce"] - stats.ce_clean
        recovered = (zero["ce"] - stats.ce_spliced) / gap if gap else float("nan")
        return stats.delta_loss, recovered

    return run


@dataclass(frozen=True)
class Agreement:
    """How ITO's code of one dictionary agrees with its encoder's, entry by entry."""

    strong_both: float
    """Of the entries where the encoder fires at >= half that latent's largest activation on
    the rows, the fraction ITO fires on too."""
    weak_both: float
    """The same for the encoder's weaker entries (below half of the latent's largest)."""
    ito_only: float
    """Of the entries where ITO fires, the fraction the encoder does not."""


@torch.inference_mode()
def agreement(sae: SAE, coded: SAE, rows: Sequence[Tensor]) -> Agreement:
    """Entry-by-entry agreement of ``coded`` (ITO) with ``sae``'s encoder on ``rows``."""
    enc = torch.cat([sae.encode(x.to(sae.W_dec.device)).to_dense().cpu() for x in rows])
    ito = torch.cat([coded.encode(x.to(sae.W_dec.device)).to_dense().cpu() for x in rows])
    top = enc.max(0).values.clamp_min(1e-12)  # (d_sae,)
    fires, ito_fires = enc > 0, ito > 0
    strong = fires & (enc >= top / 2)
    weak = fires & ~strong
    frac = lambda m: float((m & ito_fires).sum()) / max(int(m.sum()), 1)  # noqa: E731
    return Agreement(
        frac(strong), frac(weak), float((ito_fires & ~fires).sum()) / max(int(ito_fires.sum()), 1)
    )


@torch.inference_mode()
def feature_scatter(
    sae: SAE, coded: SAE, rows: Sequence[Tensor], feature: int
) -> tuple[Tensor, Tensor]:
    """(encoder, ITO) activations of ``feature`` on every row where either fires."""
    if not 0 <= feature < sae.cfg.d_sae:
        raise SaescopeError(f"feature {feature} is not in 0..{sae.cfg.d_sae - 1}")
    enc = torch.cat([sae.encode(x).to_dense()[:, feature].cpu() for x in rows])
    ito = torch.cat([coded.encode(x).to_dense()[:, feature].cpu() for x in rows])
    either = (enc > 0) | (ito > 0)
    return enc[either].float(), ito[either].float()


def write_frontier(
    points: Sequence[FrontierPoint],
    out: str | Path,
    info: dict[str, object],
    scatter: tuple[str, int, Tensor, Tensor] | None = None,
) -> list[Path]:
    """``frontier.json``, ``frontier.md`` (the table) and ``frontier.png`` (x L0, y loss
    recovered or, without losses, 1 - FVU; one ITO curve per dictionary, encoder points grey;
    top-k truncation dashed), and ``scatter.png`` given (dictionary, feature, enc, ito)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    data = {"info": info, "points": [asdict(p) for p in points]}
    write_atomic(root / "frontier.json", strict_json(data).encode())
    write_atomic(root / "frontier.md", frontier_table(points).encode())
    files = [root / "frontier.json", root / "frontier.md", _plot(points, root / "frontier.png")]
    if scatter is not None:
        files.append(_scatter(*scatter, root / "scatter.png"))
    return files


def frontier_table(points: Sequence[FrontierPoint]) -> str:
    """A markdown table of every point."""
    lines = [
        "| dictionary | coder | target L0 | L0 | FVU | delta loss | loss recovered |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for p in points:
        target = "-" if p.target_l0 is None else str(p.target_l0)
        lines.append(
            f"| {p.dictionary} | {p.coder} | {target} | {p.l0:.1f} | {p.fvu:.4f} | "
            f"{fmt(p.delta_loss)} | {fmt(p.loss_recovered)} |"
        )
    return "\n".join(lines) + "\n"


def _y(p: FrontierPoint) -> float:
    return p.loss_recovered if p.loss_recovered is not None else 1 - p.fvu


def _plot(points: Sequence[FrontierPoint], file: Path) -> Path:
    from saescope._plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(dict.fromkeys(p.dictionary for p in points))
    for i, name in enumerate(names):
        color = "black" if name == RANDOM else f"C{i}"
        for coder, style in (("topk", "--"), ("gp", "-"), ("mp", "-"), ("omp", "-")):
            curve = sorted(
                (p.l0, _y(p)) for p in points if p.dictionary == name and p.coder == coder
            )
            if curve:
                label = f"{name} ({'ITO ' + coder if coder != 'topk' else 'top-k truncation'})"
                ax.plot(*zip(*curve, strict=True), style, marker="o", ms=3, color=color, label=label,
                        alpha=1.0 if style == "-" else 0.5)  # fmt: skip
        for p in points:
            if p.dictionary == name and p.coder == "encoder":
                ax.scatter([p.l0], [_y(p)], color="grey", zorder=3, marker="s")
                ax.annotate(name, (p.l0, _y(p)), fontsize=7, color="grey")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("L0")
    ax.set_ylabel(
        "loss recovered" if points and points[0].loss_recovered is not None else "1 - FVU"
    )
    ax.set_title("ITO frontier (grey squares: each SAE's own encoder)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(file, dpi=130)
    plt.close(fig)
    return file


def _scatter(name: str, feature: int, enc: Tensor, ito: Tensor, file: Path) -> Path:
    from saescope._plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(enc.numpy(), ito.numpy(), s=4, alpha=0.5)
    top = float(max(enc.max(), ito.max())) if len(enc) else 1.0
    ax.plot([0, top], [0, top], color="grey", lw=0.8)
    ax.set_xlabel("encoder activation")
    ax.set_ylabel("ITO activation")
    ax.set_title(f"{name}, feature {feature}")
    fig.tight_layout()
    fig.savefig(file, dpi=130)
    plt.close(fig)
    return file


def load_json(path: str | Path) -> list[FrontierPoint]:
    """The points of a ``frontier.json``."""
    return [FrontierPoint(**p) for p in json.loads(Path(path).read_text())["points"]]
