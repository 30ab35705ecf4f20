"""Static HTML feature dashboards: one self-contained page per feature, readable offline.

Each page: density and activation summary, the log10-activation histogram (inline SVG), the
promoted and suppressed tokens, the neighbours, the top contexts highlighted by activation (hover a
token for its value), a sample by quantile, and contexts where the feature is silent.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from saescope.interpret.neurons import Example
from saescope.interpret.query import FeatureIndex, FeatureRecord

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.sub { color: #666; } .grid { display: flex; gap: 2em; flex-wrap: wrap; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 0.15em 0.6em; }
th { text-align: left; border-bottom: 1px solid #ccc; }
.ex { font-family: ui-monospace, monospace; font-size: 0.85em; line-height: 1.8;
      border-bottom: 1px solid #eee; padding: 0.2em 0; white-space: pre-wrap; }
.ex .v { color: #888; display: inline-block; width: 5em; }
.tok { border-radius: 2px; } .peak { outline: 1px solid #c40; }
.pos { color: #060; } .neg { color: #a00; }
"""


def _token_html(example: Example, scale: float) -> str:
    spans = []
    for i, (token, act) in enumerate(zip(example.tokens, example.activations, strict=True)):
        alpha = 0.0 if scale <= 0 else min(max(act / scale, 0.0), 1.0)
        cls = "tok peak" if i == example.focus and act > 0 else "tok"
        text = html.escape(token.replace("\n", "↵"))
        spans.append(
            f'<span class="{cls}" title="{act:.3g}" '
            f'style="background: rgba(255,110,0,{alpha:.2f})">{text}</span>'
        )
    return "".join(spans)


def _examples_html(examples: list[Example], scale: float, label: bool = True) -> str:
    rows = []
    for e in examples:
        value = f'<span class="v">{e.activation:.3g}</span>' if label else ""
        rows.append(f'<div class="ex">{value}{_token_html(e, scale)}</div>')
    return "\n".join(rows) or '<p class="sub">none</p>'


def _histogram_svg(
    counts: np.ndarray, edges: np.ndarray, width: int = 420, height: int = 120
) -> str:
    used = np.nonzero(counts)[0]
    if len(used) == 0:
        return '<p class="sub">never fired</p>'
    lo, hi = used[0], used[-1] + 1
    counts, edges = counts[lo:hi], edges[lo : hi + 1]
    bar = width / len(counts)
    top = counts.max()
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 20 - c / top * (height - 30):.1f}" '
        f'width="{max(bar - 1, 1):.1f}" height="{c / top * (height - 30):.1f}" fill="#e8781e">'
        f"<title>10^{edges[i]:.2f}–10^{edges[i + 1]:.2f}: {c:,}</title></rect>"
        for i, c in enumerate(counts)
    )
    axis = (
        f'<text x="0" y="{height - 4}" font-size="11">{10 ** edges[0]:.3g}</text>'
        f'<text x="{width}" y="{height - 4}" font-size="11" text-anchor="end">'
        f"{10 ** edges[-1]:.3g}</text>"
    )
    return f'<svg width="{width}" height="{height}">{bars}{axis}</svg>'


def _table(rows: list[tuple[str, str]], head: tuple[str, str], cls: str = "") -> str:
    body = "".join(f'<tr><td class="{cls}">{html.escape(a)}</td><td>{b}</td></tr>' for a, b in rows)
    return f"<table><tr><th>{head[0]}</th><th>{head[1]}</th></tr>{body}</table>"


def feature_html(index: FeatureIndex, record: FeatureRecord, linked: set[int]) -> str:
    meta = index.meta
    scale = record.max_activation
    neighbours = index.describe([f for f, _ in record.neighbours])

    def link(f: int) -> str:
        return f'<a href="feature-{f}.html">{f}</a>' if f in linked else str(f)

    neighbour_rows = "".join(
        f"<tr><td>{link(f)}</td><td>{c:.3f}</td><td>{html.escape(neighbours[f])}</td></tr>"
        for f, c in record.neighbours
    )
    samples = "".join(
        f"<h3 class='sub'>quantile {q + 1} of 4</h3>"
        + _examples_html([e for qq, e in record.samples if qq == q], scale)
        for q in sorted({q for q, _ in record.samples})
    )
    neurons = (
        "<h2>Neurons it draws on</h2>"
        + _table([(str(n), f"{w:+.3f}") for n, w in record.neurons], ("neuron", "weight"))
        if record.neurons
        else ""
    )
    explanation = (
        f"<p><b>Explanation:</b> {html.escape(record.explanation)}</p>"
        if record.explanation
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Feature {record.feature}</title><style>{STYLE}</style></head><body>
<p class="sub"><a href="index.html">all features</a> · {html.escape(str(meta.get("model")))}
 · {html.escape(meta["site"])} · {meta["source"]["kind"]} · {meta["tokens"]:,} tokens</p>
<h1>Feature {record.feature}</h1>{explanation}
<p>peaks on: {html.escape(record.top_tokens) or "–"}</p>
<p class="sub">fires on {record.density:.3%} of tokens ({record.fires:,}) · max activation
 {record.max_activation:.3g} · mean when firing {record.mean_activation or 0:.3g}</p>
<div class="grid"><div><h2>Activation histogram (log10)</h2>
{_histogram_svg(record.histogram, index.histogram_edges)}</div>
<div><h2>Promotes</h2>{_table([(t, f"{v:+.3g}") for t, v in record.promoted], ("token", "logit"), "pos")}</div>
<div><h2>Suppresses</h2>{_table([(t, f"{v:+.3g}") for t, v in record.suppressed], ("token", "logit"), "neg")}</div>
<div><h2>Neighbours (decoder cosine)</h2><table><tr><th>feature</th><th>cos</th><th>peaks on</th></tr>
{neighbour_rows}</table></div></div>{neurons}
<h2>Top activations</h2>{_examples_html(record.top, scale)}
<h2>A sample of where it fires, by quantile</h2>{samples or '<p class="sub">none</p>'}
<h2>Where it is silent</h2>{_examples_html(record.zeros, scale, label=False)}
</body></html>"""


def write_dashboards(index: FeatureIndex, features: list[int], out: str | Path) -> Path:
    """One page per feature plus ``index.html`` listing them, in ``out``; returns the listing."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    linked = {index.check(f) for f in features}
    rows = []
    for f in features:
        record = index.feature(f)
        (out / f"feature-{f}.html").write_text(feature_html(index, record, linked))
        rows.append(
            f'<tr><td><a href="feature-{f}.html">{f}</a></td><td>{record.density:.3%}</td>'
            f"<td>{html.escape(record.description)}</td></tr>"
        )
    listing = f"""<!doctype html><html><head><meta charset="utf-8"><title>Features</title>
<style>{STYLE}</style></head><body><h1>Features</h1>
<p class="sub">{html.escape(repr(index))}</p><table>
<tr><th>feature</th><th>density</th><th>description</th></tr>{"".join(rows)}</table></body></html>"""
    path = out / "index.html"
    path.write_text(listing)
    return path
