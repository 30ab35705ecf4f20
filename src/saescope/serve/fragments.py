"""HTML pieces shared by the pages and the live results: shaded tokens, bar charts, the map,
and the fragments model jobs return. Every string from the index or a request is escaped."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence

import numpy as np

from saescope.interpret.neurons import Example
from saescope.serve.state import Served
from saescope.serve.work import Inspection, TokenActivations
from saescope.steer.comparison import Comparison
from saescope.steer.measure import SteeringPoint

esc = html.escape


def shown(token: str) -> str:
    return esc(token.replace("\n", "↵"))


def token_spans(
    tokens: Sequence[str],
    values: Sequence[float],
    scale: float,
    focus: int | None = None,
    excluded: Sequence[bool] = (),
) -> str:
    """Each token shaded by its activation / ``scale``; hovering shows the value."""
    spans = []
    for i, (token, act) in enumerate(zip(tokens, values, strict=True)):
        if i < len(excluded) and excluded[i]:
            spans.append(
                f'<span class="tok special" title="special: not encoded">{shown(token)}</span>'
            )
            continue
        alpha = 0.0 if scale <= 0 else min(max(act / scale, 0.0), 1.0)
        cls = "tok peak" if i == focus and act > 0 else "tok"
        spans.append(
            f'<span class="{cls}" title="{act:.3g}" data-v="{act:.4g}" '
            f'style="background: rgba(255,110,0,{alpha:.2f})">{shown(token)}</span>'
        )
    return "".join(spans)


def examples(items: Sequence[Example], scale: float, label: str = "") -> str:
    rows = []
    for i, e in enumerate(items):
        value = (
            f'<span class="v">{esc(label.format(i=i)) if label else f"{e.activation:.3g}"}</span>'
        )
        spans = token_spans(e.tokens, e.activations, scale, e.focus)
        rows.append(f'<div class="ex">{value}{spans}</div>')
    return "\n".join(rows) or '<p class="sub">none</p>'


def bars_svg(counts: np.ndarray, edges: np.ndarray, xlabel: str, w: int = 420, h: int = 120) -> str:
    """A histogram as inline SVG; ``edges`` label the x axis (log10 values shown as 10^x)."""
    if len(counts) == 0 or counts.max() == 0:
        return '<p class="sub">nothing to show</p>'
    used = np.nonzero(counts)[0]
    counts, edges = counts[used[0] : used[-1] + 1], edges[used[0] : used[-1] + 2]
    peak = float(counts.max())
    bw = w / len(counts)
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{h - 20 - (h - 30) * c / peak:.1f}" width="{bw * 0.9:.1f}" '
        f'height="{(h - 30) * c / peak:.1f}" fill="#e67e22"><title>{edges[i]:.2f}..'
        f"{edges[i + 1]:.2f}: {int(c)}</title></rect>"
        for i, c in enumerate(counts)
    )
    ticks = f'<text x="0" y="{h - 4}" font-size="10">10^{edges[0]:.1f}</text>'
    ticks += f'<text x="{w - 50}" y="{h - 4}" font-size="10">10^{edges[-1]:.1f}</text>'
    ticks += f'<text x="{w / 2 - 40}" y="{h - 4}" font-size="10">{esc(xlabel)}</text>'
    return f'<svg width="{w}" height="{h}" role="img">{bars}{ticks}</svg>'


def feature_link(served: Served, feature: int, text: str | None = None) -> str:
    label = esc(text) if text is not None else str(feature)
    return f'<a href="/i/{served.name}/feature/{feature}">{label}</a>'


def map_svg(served: Served, size: int = 560) -> str:
    """The feature map: one dot per feature, coloured by log10 density (dead: grey)."""
    if served.layout is None:
        return f'<p class="sub">no feature map: {esc(served.why_no_source)}</p>'
    dots = []
    for s, (x, y) in zip(served.stats, served.layout, strict=True):
        if s.density > 0:
            t = min(max((math.log10(s.density) + 5) / 5, 0.0), 1.0)  # 1e-5 .. 1
            colour = f"hsl({240 - 240 * t:.0f},80%,45%)"
        else:
            colour = "#bbb"
        label = esc(_peaks(served, s.feature), quote=True)
        dots.append(
            f'<circle cx="{8 + x * (size - 16):.1f}" cy="{8 + (1 - y) * (size - 16):.1f}" r="3" '
            f'fill="{colour}" data-f="{s.feature}" data-t="{label}"/>'
        )
    return (
        f'<div style="width:{size}px"><svg id="map" width="{size}" height="{size}" style="border:1px solid #ddd;cursor:pointer">'
        + "".join(dots)
        + f'</svg><div id="tip"></div><script>saescopeMap(document.getElementById("map"), '
        f'"/i/{served.name}")</script><p class="sub">{esc(served.layout_method)} of the unit '
        "decoder directions; colour: density (blue rare, red common, grey never fired)</p></div>"
    )


def _peaks(served: Served, feature: int) -> str:
    from saescope.interpret.query import peaks_text

    return peaks_text(served.peaks[feature]) or "never fired"


def test_fragment(result: TokenActivations, scale: float) -> str:
    top = max((v for v, x in zip(result.values, result.excluded, strict=True) if not x), default=0)
    spans = token_spans(result.tokens, result.values, scale, excluded=result.excluded)
    return f'<div class="ex" id="shaded">{spans}</div><p class="sub">largest: {top:.3g}</p>'


def inspect_fragment(served: Served, result: Inspection, described: dict[int, str]) -> str:
    rows = []
    for t in result.tokens:
        feats = " ".join(
            f'{feature_link(served, f)}<span class="sub">({v:.2g}: {esc(described.get(f, ""))})</span>'
            for f, v in t.features
        )
        mark = " ←" if t.position == result.position else ""
        rows.append(
            f"<tr><td>{t.position}</td><td><code>{shown(repr(t.token))}</code>{mark}</td>"
            f'<td class="feats">{feats or "<span class=sub>special</span>"}</td></tr>'
        )
    table = "<table><tr><th>#</th><th>token</th><th>top features</th></tr>" + "".join(rows)
    picture = json.dumps(result.picture)
    next_rows = "".join(
        f"<tr><td><code>{shown(repr(t))}</code></td><td>{p:.3f}</td></tr>"
        for t, p in result.next_tokens
    )
    lens = "".join(
        f"<tr><td>{esc(stage)}</td>"
        + "".join(
            f'<td style="background: rgba(60,120,255,{min(p, 1):.2f})" title="{p:.3f}">'
            f"{shown(repr(t))}</td>"
            for t, p in top
        )
        + "</tr>"
        for stage, top in zip(result.lens_stages, result.lens_top, strict=True)
    )
    pos = result.position
    return (
        f"<h2>Tokens and their features</h2>{table}</table>"
        f"<h2>Feature vector of token {pos} "
        f"({result.picture['rows']} × {result.picture['cols']})</h2>"
        f"<canvas data-picture='{esc(picture, quote=True)}' style=\"width:{result.picture['cols'] * 3}px\">"
        "</canvas>"
        f'<div class="grid"><div><h2>Next token</h2><table>{next_rows}</table></div>'
        f"<div><h2>Logit lens (last position)</h2><table>{lens}</table></div></div>"
    )


def steer_fragment(result: Comparison, top: int) -> str:
    def probs(p: object) -> str:
        return "".join(
            f"<tr><td><code>{shown(repr(t))}</code></td><td>{q:.3f}</td></tr>"
            for t, q in p.top(top)  # type: ignore[attr-defined]
        )

    texts = "".join(
        f'<div class="side"><div class="box clean">{shown(a)}</div>'
        f'<div class="box steered">{shown(b)}</div></div>'
        for a, b in zip(result.clean_rollouts.texts, result.steered_rollouts.texts, strict=True)
    )
    return (
        '<div class="side"><div><h2>Clean: next token</h2><table>'
        f"{probs(result.clean)}</table></div><div><h2>Steered: next token</h2><table>"
        f"{probs(result.steered)}</table></div></div>"
        f'<h2>Continuations (same seed): clean | steered</h2><div id="continuations">{texts}</div>'
    )


def sweep_fragment(points: Sequence[SteeringPoint], op: str, w: int = 420, h: int = 260) -> str:
    """The success-vs-loss curve of a sweep as inline SVG, and a table of its points."""
    losses = [p.loss for p in points]
    lo, hi = min(losses), max(losses)
    span = hi - lo or 1.0

    def xy(p: SteeringPoint) -> tuple[float, float]:
        return 40 + (w - 60) * (p.loss - lo) / span, h - 30 - (h - 50) * p.success

    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in map(xy, points))
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#c0392b"><title>{op} {p.coefficient:g}: '
        f"success {p.success:.2f}, loss {p.loss:.3f}</title></circle>"
        f'<text x="{x + 5:.1f}" y="{y - 5:.1f}" font-size="10">{p.coefficient:g}</text>'
        for p, (x, y) in zip(points, map(xy, points), strict=True)
    )
    axes = (
        f'<line x1="40" y1="{h - 30}" x2="{w - 10}" y2="{h - 30}" stroke="#444"/>'
        f'<line x1="40" y1="20" x2="40" y2="{h - 30}" stroke="#444"/>'
        f'<text x="{w / 2 - 60}" y="{h - 8}" font-size="11">loss on the held-out text</text>'
        f'<text x="2" y="14" font-size="11">success (share of rollouts on target)</text>'
        f'<text x="40" y="{h - 18}" font-size="10">{lo:.3f}</text>'
        f'<text x="{w - 50}" y="{h - 18}" font-size="10">{hi:.3f}</text>'
    )
    svg = (
        f'<svg id="sweep-plot" width="{w}" height="{h}">{axes}'
        f'<polyline points="{path}" fill="none" stroke="#c0392b"/>{dots}</svg>'
    )
    rows = "".join(
        f"<tr><td>{p.coefficient:g}</td><td>{p.success:.2f}</td><td>{p.loss:.3f}</td>"
        f"<td>{shown(p.texts[0])}</td></tr>"
        for p in points
    )
    return (
        f"{svg}<table><tr><th>{esc(op)}</th><th>success</th><th>loss</th>"
        f"<th>first rollout</th></tr>{rows}</table>"
    )
