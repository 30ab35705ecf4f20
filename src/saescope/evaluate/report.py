"""The evaluation report: ``metrics.json`` (versioned keys) and ``report.html`` (self-contained,
plots embedded), readable offline without a notebook."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from saescope._files import strict_json
from saescope._plotting import pyplot
from saescope.evaluate.reconstruction import SCALARS
from saescope.evaluate.result import EvalResult

FORMAT = "saescope.eval/1"


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _histograms(result: EvalResult) -> list[str]:
    plt = pyplot()
    r = result.reconstruction
    figures = []
    fig, ax = plt.subplots(figsize=(5, 3))
    alive = r.log10_density[r.firing_counts > 0]
    ax.hist(alive.numpy(), bins=60, color="#3b6ea5")
    ax.set(
        xlabel="log10 firing density",
        ylabel="latents",
        title=f"feature density ({int((r.firing_counts == 0).sum())} dead not shown)",
    )
    figures.append(_png(fig))
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(range(len(r.l0_counts)), r.l0_counts.numpy(), color="#6a9f58", width=1.0)
    ax.set(xlabel="active latents per token (L0)", ylabel="tokens", title=f"L0, mean {r.l0:.1f}")
    figures.append(_png(fig))
    fig, ax = plt.subplots(figsize=(5, 3))
    # No latent fired: an empty histogram, and a log axis over nothing would warn.
    ax.hist(r.activations.numpy(), bins=60, color="#b5651d", log=len(r.activations) > 0)
    ax.set(xlabel="activation (non-zero)", ylabel="count", title="activation magnitudes")
    figures.append(_png(fig))
    return figures


def _pareto(results: list[EvalResult]) -> list[str]:
    plt = pyplot()
    figures = []
    for label, value in (
        ("FVU", lambda r: r.reconstruction.fvu),
        ("delta loss", lambda r: r.spliced.delta_loss if r.spliced else None),
    ):
        points = [(r.reconstruction.l0, value(r), r.name) for r in results if value(r) is not None]
        if len(points) < 2:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for l0, y, name in points:
            ax.scatter(l0, y)
            ax.annotate(name, (l0, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="L0", ylabel=label, title=f"L0 vs {label} (lower left is better)")
        figures.append(_png(fig))
    return figures


def _probing_table(results: list[EvalResult]) -> str:
    """Held-out accuracy per probing task: raw activations, then the k-sparse SAE probes."""
    probed = [r for r in results if r.probing]
    if not probed:
        return ""
    tasks = sorted({t for r in probed for t in r.probing or {}})
    ks = sorted(
        {k for r in probed for t in (r.probing or {}).values() for k in t["sparse"]}, key=int
    )
    head = "".join(
        f"<th>{html.escape(t)} raw</th>" + "".join(f"<th>{html.escape(t)} k={k}</th>" for k in ks)
        for t in tasks
    )
    body = ""
    for r in probed:
        cells = []
        for t in tasks:
            task = (r.probing or {}).get(t) or {"raw": None, "sparse": {}}
            for value in [task["raw"], *(task["sparse"].get(k) for k in ks)]:
                cells.append("-" if value is None else f"{value:.3f}")
        body += (
            f"<tr><th>{html.escape(r.name)}</th>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    return f"<h2>k-sparse probing (held-out accuracy)</h2><table><tr><th>SAE</th>{head}</tr>{body}</table>"


def write_report(results: list[EvalResult], out: str | Path, context: dict[str, Any]) -> Path:
    """Write ``metrics.json`` and ``report.html`` into ``out``; returns the HTML path."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    metrics = {"format": FORMAT, "context": context, "saes": {r.name: r.to_dict() for r in results}}
    (root / "metrics.json").write_text(strict_json(metrics))
    columns = {
        "reconstruction": list(SCALARS),
        # The apostrophe-like huge-norm rows carry a large share of the variance: FVU without
        # them says how well the SAE does on the text the features are meant to describe.
        "without_outliers": ["fvu", "tokens"],
        "outliers": ["threshold"],
        "spliced": [
            "ce_clean",
            "ce_spliced",
            "delta_loss",
            "kl",
            "ce_zero",
            "ce_mean",
            "loss_recovered",
        ],
        "geometry": [
            "max_decoder_cosine_mean",
            "duplicate_fraction",
            "encoder_decoder_cosine_mean",
            "top1_neuron_share",
            "neuron_kurtosis_mean",
        ],
        "absorption": ["absorption_rate", "false_negative_rate"],
    }
    rows = []
    for r in results:
        values = r.to_dict()
        cells = [
            "-" if (values[group] or {}).get(key) is None else f"{values[group][key]:.4g}"
            for group, keys in columns.items()
            for key in keys
        ]
        rows.append(
            f"<tr><th>{html.escape(r.name)}</th>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    labels = {
        "without_outliers": "{} w/o outliers",
        "outliers": "outlier {}",
        "absorption": "letter {}",
    }
    names = [labels.get(group, "{}").format(key) for group, keys in columns.items() for key in keys]
    header = "".join(f"<th>{k}</th>" for k in ["SAE", *names])
    sections = [
        f"<h2>{html.escape(r.name)}</h2><p>{html.escape(r.path)}: {r.architecture}, "
        f"{r.d_sae:,} latents, site {r.site}</p>" + "".join(_histograms(r))
        for r in results
    ]
    pareto = _pareto(results)
    context_html = "".join(
        f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in context.items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>saescope evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;
font-size:13px}}td,th{{border:1px solid #ccc;padding:4px 6px;text-align:right}}img{{margin:4px}}
</style></head><body><h1>SAE evaluation</h1><ul>{context_html}</ul>
<table><tr>{header}</tr>{"".join(rows)}</table>{_probing_table(results)}
{"<h2>Pareto</h2>" + "".join(pareto) if pareto else ""}{"".join(sections)}</body></html>"""
    (root / "report.html").write_text(page)
    return root / "report.html"
