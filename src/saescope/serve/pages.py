"""The server-rendered pages. Each has a stable URL (``/i/NAME/feature/123``), so a link can be
pasted in a note; live parts post to ``/api/...`` through ``assets.JS``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np

from saescope.interpret.query import FeatureRecord, FeatureStats, SearchHit, peaks_text
from saescope.serve.fragments import (
    bars_svg,
    esc,
    examples,
    feature_link,
    map_svg,
    shown,
)
from saescope.serve.state import Served, log_density_bins

PAGE_ROWS = 100
SORTS = ("feature", "density", "fires", "max")


def layout(title: str, body: str, served: Served | None = None) -> str:
    nav = '<a href="/">indexes</a>'
    if served is not None:
        base = f"/i/{served.name}"
        nav += (
            f'<a href="{base}">{esc(served.name)}</a><a href="{base}/search">search</a>'
            f'<a href="{base}/map">map</a><a href="{base}/inspect">prompt inspector</a>'
            f'<a href="{base}/steer">steering</a>'
        )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
        '<link rel="stylesheet" href="/static/style.css"><script src="/static/app.js"></script>'
        f"</head><body><header>saescope {nav}</header><main>{body}</main></body></html>"
    )


def home(served: Sequence[Served]) -> str:
    rows = "".join(
        f'<tr><td><a href="/i/{s.name}">{esc(s.name)}</a></td><td>{esc(str(s.index.path))}</td>'
        f"<td>{s.index.n_features:,}</td><td>{esc(str(s.index.meta.get('site')))}</td></tr>"
        for s in served
    )
    return layout(
        "saescope",
        "<h1>Feature indexes</h1><table><tr><th>name</th><th>file</th><th>features</th>"
        f"<th>site</th></tr>{rows}</table>",
    )


@dataclass(frozen=True)
class TableQuery:
    """The overview table's sorting, filter and page (from the URL's query string)."""

    sort: str = "density"
    descending: bool = True
    contains: str = ""
    """Keep features whose peak tokens contain this text (case-insensitive)."""
    min_density: float = 0.0
    max_density: float = 1.0
    page: int = 0

    def url(self, name: str, **change: object) -> str:
        fields = {**self.__dict__, **change}
        query = {
            "sort": fields["sort"],
            "order": "desc" if fields["descending"] else "asc",
            "q": fields["contains"],
            "dmin": fields["min_density"],
            "dmax": fields["max_density"],
            "page": fields["page"],
        }
        return f"/i/{name}?{urlencode(query)}"


def _rows(served: Served, q: TableQuery) -> list[FeatureStats]:
    needle = q.contains.lower()
    rows = [
        s
        for s in served.stats
        if q.min_density <= s.density <= q.max_density
        and (not needle or any(needle in t.lower() for t, _ in served.peaks[s.feature]))
    ]
    key = {"feature": 0, "fires": 1, "density": 2, "max": 4}[q.sort]
    return sorted(rows, key=lambda s: (s[key], s.feature), reverse=q.descending)


def overview(served: Served, q: TableQuery) -> str:
    index, meta = served.index, served.index.meta
    density = np.array([s.density for s in served.stats])
    counts, edges, dead = log_density_bins(density)
    source = meta.get("source", {})
    facts = [
        ("model", meta.get("model")),
        ("site", meta.get("site")),
        ("features", f"{index.n_features:,} ({source.get('kind')})"),
        ("SAE", source.get("path")),
        ("SAE checksum", source.get("identity")),
        ("dataset", meta.get("dataset")),
        ("tokens indexed", f"{meta.get('tokens', 0):,}"),
        ("built", meta.get("created")),
        ("never fired", f"{dead:,}"),
    ]
    prov = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)
    metrics = ""
    if served.metrics:
        items = {k: v for k, v in served.metrics.items() if isinstance(v, int | float | str)}
        metrics = (
            '<h2>Evaluation</h2><div class="metrics"><table>'
            + "".join(
                f"<tr><th>{esc(k)}</th><td>{esc(f'{v:.4g}' if isinstance(v, float) else str(v))}</td></tr>"
                for k, v in items.items()
            )
            + "</table></div>"
        )
    rows = _rows(served, q)
    page = rows[q.page * PAGE_ROWS : (q.page + 1) * PAGE_ROWS]
    described = index.describe([s.feature for s in page])
    head = "".join(
        f'<th><a href="{q.url(served.name, sort=c, descending=not q.descending if q.sort == c else True, page=0)}">'
        f"{c}{' ▼' if q.sort == c and q.descending else ' ▲' if q.sort == c else ''}</a></th>"
        for c in SORTS
    )
    body_rows = "".join(
        f"<tr><td>{feature_link(served, s.feature)}</td><td>{s.density:.3%}</td>"
        f"<td>{s.fires:,}</td><td>{s.max_activation:.3g}</td>"
        f"<td>{esc(peaks_text(served.peaks[s.feature]))}</td>"
        f"<td>{esc(described[s.feature])}</td></tr>"
        for s in page
    )
    pages = max(1, -(-len(rows) // PAGE_ROWS))
    nav = f"page {q.page + 1} of {pages} ({len(rows):,} features)"
    if q.page > 0:
        nav = f'<a href="{q.url(served.name, page=q.page - 1)}">previous</a> ' + nav
    if q.page + 1 < pages:
        nav += f' <a href="{q.url(served.name, page=q.page + 1)}">next</a>'
    filters = (
        f'<form method="get" action="/i/{served.name}"><input type="hidden" name="sort" '
        f'value="{q.sort}"><input type="hidden" name="order" '
        f'value="{"desc" if q.descending else "asc"}">peak tokens containing '
        f'<input name="q" value="{esc(q.contains, quote=True)}" style="width:10em"> density '
        f'<input name="dmin" value="{q.min_density:g}" size="6"> to '
        f'<input name="dmax" value="{q.max_density:g}" size="6"> <button>filter</button></form>'
    )
    search = (
        f'<form method="get" action="/i/{served.name}/search" id="search-form">'
        '<input name="q" placeholder="search peak tokens, contexts, explanations" '
        'style="width:25em"> <button>search</button></form>'
    )
    return layout(
        f"{served.name}: overview",
        f"<h1>{esc(served.name)}</h1>{search}<div class='grid'><div><h2>Provenance</h2>"
        f"<table>{prov}</table>{metrics}</div><div><h2>Density of the features</h2>"
        f"{bars_svg(counts, edges, 'density')}<h2>Feature map</h2>{map_svg(served, 360)}</div>"
        f'</div><h2>Features</h2>{filters}<p>{nav}</p><table id="features"><tr>{head}'
        f"<th>peak tokens</th><th>description</th></tr>{body_rows}</table><p>{nav}</p>",
        served,
    )


def feature_page(served: Served, r: FeatureRecord) -> str:
    base = f"/i/{served.name}"
    scale = r.max_activation
    neighbours = "".join(
        f"<tr><td>{feature_link(served, f)}</td><td>{c:.3f}</td>"
        f"<td>{esc(peaks_text(served.peaks[f]))}</td></tr>"
        for f, c in r.neighbours
    )
    tokens = "".join(
        f'<tr><td><code>{shown(repr(a))}</code></td><td class="pos">{v:+.3g}</td>'
        f'<td><code>{shown(repr(b))}</code></td><td class="neg">{w:+.3g}</td></tr>'
        for (a, v), (b, w) in zip(r.promoted, r.suppressed, strict=False)
    )
    neurons = ""
    if r.neurons:
        neurons = (
            "<h2>Neurons it reads</h2><table><tr><th>neuron</th><th>weight</th></tr>"
            + "".join(f"<tr><td>{n}</td><td>{w:+.3g}</td></tr>" for n, w in r.neurons)
            + "</table>"
        )
    explanations = _explanations(r)
    steer_value = 10 * max(r.max_activation, 1e-3)
    steer_link = f"{base}/steer?{urlencode({'edit': f'clamp {r.feature}={steer_value:.3g}'})}"
    live = ""
    if served.source is not None:
        live = (
            '<h2>Test text</h2><textarea id="test-text" rows="3" placeholder="type text: this '
            'feature\'s activation on every token"></textarea><div id="test-out"></div>'
            f'<script>saescopeLive(document.getElementById("test-text"), '
            f'"/api/i/{served.name}/feature/{r.feature}/activations", '
            'document.getElementById("test-out"))</script>'
            f'<p><a class="button" id="steer-link" href="{esc(steer_link, quote=True)}">'
            "steer with this feature</a></p>"
        )
    samples = examples([e for _, e in r.samples], scale, label="").replace(
        '<div class="ex">', '<div class="ex sample">'
    )
    quantiles = " ".join(f"q{q}" for q, _ in r.samples)
    dense = ' <span class="error">dense</span>' if r.dense else ""
    return layout(
        f"{served.name}: feature {r.feature}",
        f"<h1>Feature {r.feature}{dense}</h1><p class='sub'>{esc(r.description)}</p>"
        f'<p><a href="{base}/feature/{r.feature}.json">JSON</a> · density {r.density:.4%} · '
        f"fires {r.fires:,} · max {r.max_activation:.4g} · mean "
        f"{'-' if r.mean_activation is None else f'{r.mean_activation:.4g}'}</p>"
        f"{explanations}<div class='grid'><div><h2>Activation histogram</h2>"
        f"{bars_svg(r.histogram, served.index.histogram_edges, 'activation')}</div>"
        f"<div><h2>Promotes / suppresses</h2><table>{tokens}</table></div>"
        f'<div><h2>Neighbours (decoder cosine)</h2><table id="neighbours">{neighbours}</table>'
        f"</div></div>{neurons}{live}<h2>Top activations</h2>{examples(r.top, scale)}"
        f"<h2>Sampled contexts by quantile</h2><p class='sub'>{esc(quantiles)}</p>{samples}"
        f"<h2>Where it is silent</h2>{examples(r.zeros, scale)}",
        served,
    )


def _explanations(r: FeatureRecord) -> str:
    """Every explanation the record carries (``explanations`` where the index provides them,
    else the best one)."""
    many = getattr(r, "explanations", None)
    if many:
        rows = "".join(_explanation(e) for e in many)
        return f'<h2>Explanations</h2><ul id="explanations">{rows}</ul>'
    if r.explanation:
        return f'<h2>Explanation</h2><p id="explanations">{esc(r.explanation)}</p>'
    return ""


def _explanation(e: object) -> str:
    """One explanation: its text, and its score and method where it has them."""
    text = getattr(e, "explanation", e)
    score, method = getattr(e, "score", None), getattr(e, "method", "")
    extra = ", ".join(
        part for part in (esc(str(method)) if method else "",
                          f"score {score:.2f}" if isinstance(score, int | float) else "") if part
    )  # fmt: skip
    return (
        f"<li>{esc(str(text))}"
        + (f' <span class="sub">({extra})</span>' if extra else "")
        + "</li>"
    )


def record_json(served: Served, r: FeatureRecord) -> dict[str, object]:
    """The feature as JSON: every field of the record (NumPy arrays as lists)."""
    out: dict[str, object] = {"index": served.name, "description": r.description}
    for key, value in r.__dict__.items():
        out[key] = value.tolist() if isinstance(value, np.ndarray) else _plain(value)
    return out


def _plain(value: object) -> object:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in value.__dict__.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def search_page(served: Served, query: str, hits: list[SearchHit], error: str = "") -> str:
    rows = "".join(
        f"<tr><td>{feature_link(served, h.feature)}</td><td>{h.reason}{'' if h.whole else ' (part)'}"
        f"</td><td>{h.score:.2f}</td><td>{h.density:.3%}</td><td>{esc(h.top_tokens)}</td></tr>"
        for h in hits
    )
    result = (
        f'<p class="error">{esc(error)}</p>'
        if error
        else '<table id="hits"><tr><th>feature</th><th>match</th><th>score</th><th>density</th>'
        f"<th>peak tokens</th></tr>{rows}</table>"
        if hits
        else "<p>no features match</p>"
        if query
        else ""
    )
    return layout(
        f"{served.name}: search {query}",
        f'<h1>Search</h1><form method="get"><input name="q" value="{esc(query, quote=True)}" '
        f'autofocus style="width:25em"> <button>search</button></form>{result}',
        served,
    )


def map_page(served: Served) -> str:
    return layout(f"{served.name}: feature map", f"<h1>Feature map</h1>{map_svg(served)}", served)


def needs_model(served: Served, what: str) -> str:
    return layout(
        f"{served.name}: {what}",
        f"<h1>{esc(what)}</h1><p class='error'>not available: {esc(served.why_no_source)}</p>",
        served,
    )


def inspect_page(served: Served, prompt: str) -> str:
    script = (
        "<script>const f = document.getElementById('inspect-form');"
        "f.addEventListener('submit', e => { e.preventDefault(); "
        f"saescopePost('/api/i/{served.name}/inspect', saescopeForm(f), "
        "document.getElementById('inspect-out')); });"
        + ("f.requestSubmit();" if prompt else "")
        + "</script>"
    )
    return layout(
        f"{served.name}: prompt inspector",
        '<h1>Prompt inspector</h1><form id="inspect-form"><label>prompt <textarea name="prompt" '
        f'rows="2">{esc(prompt)}</textarea></label><label>token for the picture (-1: last) '
        '<input name="position" value="-1" size="4"></label><label>features per token '
        '<input name="k" value="5" size="4"></label><button>inspect</button></form>'
        f'<div id="inspect-out"></div>{script}',
        served,
    )


def steer_page(served: Served, edits: str, prompt: str) -> str:
    name = served.name
    form = (
        '<form id="steer-form"><label>prompt <textarea name="prompt" rows="2">'
        f"{esc(prompt)}</textarea></label>"
        "<label>feature edits, one a line: <code>clamp 12=40</code>, <code>add 7=5</code>, "
        '<code>scale 3=2</code>, <code>ablate 9</code> <textarea name="edits" rows="3">'
        f"{esc(edits)}</textarea></label>"
        '<label>find a feature <input type="text" id="find" placeholder="word" '
        'style="width:12em"></label><div id="found"></div>'
        "<label>neuron edits, one a line: <code>layers.6.mlp_act:1393=-160</code> (clamp) "
        '<textarea name="neurons" rows="1"></textarea></label>'
        '<label>steering vector: positive prompt <input type="text" name="vector_positive">'
        '</label><label>negative prompt <input type="text" name="vector_negative"></label>'
        '<label>vector coefficient <input name="vector_coefficient" value="4" size="5"></label>'
        '<label><input type="checkbox" name="error_term" checked> keep the SAE error term</label>'
        '<label>positions <select name="positions"><option>all</option><option>generated'
        "</option></select></label>"
        '<label>new tokens <input name="max_new_tokens" value="20" size="4"></label>'
        '<label>temperature (0: greedy) <input name="temperature" value="0" size="4"></label>'
        '<label>seed <input name="seed" value="0" size="4"></label>'
        '<label>samples <input name="samples" value="1" size="4"></label>'
        '<button id="steer-run">steer</button></form><div id="steer-out"></div>'
    )
    sweep = (
        '<h2>Sweep: success vs loss</h2><form id="sweep-form">'
        '<label>feature <input name="feature" size="6"></label><label>operation <select '
        'name="op"><option>clamp</option><option>add</option><option>scale</option></select>'
        '</label><label>values <input type="text" name="values" value="0, 20, 40"></label>'
        '<label>target words (success = a rollout mentions one) <input type="text" '
        'name="vocabulary"></label><label>held-out text for the loss <textarea name="loss_text"'
        ' rows="2">The history of the town goes back to a small market on the river, where '
        "traders met each week.</textarea></label>"
        '<label>rollouts per point <input name="samples" value="4" size="4"></label>'
        '<label>new tokens <input name="max_new_tokens" value="16" size="4"></label>'
        '<button id="sweep-run">sweep</button></form><div id="sweep-out"></div>'
    )
    script = f"""<script>
const sf = document.getElementById('steer-form');
sf.addEventListener('submit', e => {{ e.preventDefault(); const b = saescopeForm(sf);
  saescopePost('/api/i/{name}/steer', b, document.getElementById('steer-out')); }});
const wf = document.getElementById('sweep-form');
wf.addEventListener('submit', e => {{ e.preventDefault(); const b = saescopeForm(wf);
  b.prompt = sf.elements.prompt.value;
  saescopePost('/api/i/{name}/sweep', b, document.getElementById('sweep-out')); }});
const first = sf.elements.edits.value.match(/^\\s*\\w+\\s+(\\d+)(?:=([-\\d.e+]+))?/);
if (first) {{ wf.elements.feature.value = first[1];
  const v = parseFloat(first[2]);  // the prefilled clamp: sweep 0 .. it
  if (v > 0) wf.elements.values.value = [0, v / 5, v / 2, v].map(x => +x.toPrecision(3)).join(', ');
}}
document.getElementById('find').addEventListener('change', async e => {{
  const r = await fetch('/api/i/{name}/search?q=' + encodeURIComponent(e.target.value));
  const hits = (await r.json()).hits || [];
  const out = document.getElementById('found'); out.replaceChildren();
  hits.slice(0, 8).forEach(h => {{ const b = document.createElement('button');
    b.type = 'button'; b.textContent = h.feature + ': ' + h.top_tokens;
    b.onclick = () => {{ sf.elements.edits.value += (sf.elements.edits.value ? '\\n' : '') +
      'clamp ' + h.feature + '=' + (10 * h.max_activation).toPrecision(3); }};
    out.appendChild(b); }});
}});
</script>"""
    return layout(f"{served.name}: steering", f"<h1>Steering</h1>{form}{sweep}{script}", served)


def hits_json(served: Served, hits: list[SearchHit]) -> list[dict[str, object]]:
    return [
        {
            "feature": h.feature,
            "score": h.score,
            "reason": h.reason,
            "whole": h.whole,
            "density": h.density,
            "top_tokens": h.top_tokens,
            "max_activation": served.stats[h.feature].max_activation,
            "url": f"/i/{served.name}/feature/{h.feature}",
        }
        for h in hits
    ]
