"""Terminal rendering (rich): the one console every command prints to, tables that wrap instead
of truncating, and feature records."""

from __future__ import annotations

import os
from typing import Any

from rich import table as rich_table
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from saescope.interpret.neurons import Example
from saescope.interpret.query import (
    DENSE_DENSITY,
    ExplanationRecord,
    FeatureIndex,
    FeatureRecord,
    ScoreRecord,
)

SCORE_METHODS = ("detection", "fuzzing", "simulation")

PIPED_WIDTH = 160
"""Columns when output goes to a file or a pipe and ``COLUMNS`` is unset. rich would assume 80
there and squeeze wide tables (descriptions cut with '…'); a file has no width of its own."""

PEAK_MARK = ("«", "»")
"""Around the peak token of an example in plain output, where its colour is lost."""


def console() -> Console:
    """The console every command prints to: rich's own width on a terminal or with ``COLUMNS``
    set, ``PIPED_WIDTH`` columns otherwise."""
    out = Console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(width=PIPED_WIDTH)
    return out


def plain(out: Console) -> bool:
    """Whether ``out`` drops colour (piped, redirected, or ``NO_COLOR``), so that what colour
    marks must be marked in the text."""
    return out.color_system is None or out.no_color


class Table(rich_table.Table):
    """A rich table whose columns fold long words onto the next line instead of cutting them
    with '…' (rich's default): a description is never hidden, however narrow the console."""

    def add_column(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("overflow", "fold")
        super().add_column(*args, **kwargs)


def example_text(example: Example, scale: float, label: bool = True, mark: bool = False) -> Text:
    """Tokens shaded by activation (white to orange), the peak underlined and, with ``mark``
    (for plain output, see ``plain``), between ``PEAK_MARK``."""
    line = Text(f"{example.activation:8.2f}  " if label else "          ")
    for i, (token, act) in enumerate(zip(example.tokens, example.activations, strict=True)):
        level = 0.0 if scale <= 0 else min(max(act / scale, 0.0), 1.0)
        green, blue = int(255 - 145 * level), int(255 - 255 * level)
        style = f"black on rgb(255,{green},{blue})" if level > 0 else ""
        text = token.replace("\n", "⏎")
        if i == example.focus and act > 0:
            style += " underline"
            if mark:
                text = f"{PEAK_MARK[0]}{text}{PEAK_MARK[1]}"
        line.append(text, style=style)
    return line


def _tokens_table(title: str, rows: list[tuple[str, float]], colour: str) -> Table:
    table = Table(title=title, title_justify="left", box=None)
    table.add_column("token", style=colour)
    table.add_column("logit", justify="right")
    for token, value in rows:
        table.add_row(repr(token), f"{value:+.3g}")
    return table


def render_feature(out: Console, index: FeatureIndex, r: FeatureRecord, examples: int) -> None:
    meta = index.meta
    out.rule(f"[bold]feature {r.feature}[/bold]  ·  {meta['site']}  ·  {meta.get('model')}")
    if r.explanation:
        out.print(Text.assemble(("explanation", "bold"), f": {r.explanation}"))
    if r.explanations:
        out.print(_explanations_rows(r.explanations))
    out.print(
        f"peaks on {r.top_tokens or '–'}\nfires on {r.density:.3%} of {meta['tokens']:,} tokens "
        f"({r.fires:,}), max {r.max_activation:.3g}, mean when firing {r.mean_activation or 0:.3g}"
    )
    if r.dense:
        out.print(
            f"[bold]dense[/bold]: fires on more than {DENSE_DENSITY:.0%} of tokens; its top "
            "contexts say little about where it usually fires (see the sampled ones)"
        )
    neighbours = Table(title="neighbours", title_justify="left", box=None)
    neighbours.add_column("feature", justify="right")
    neighbours.add_column("cos", justify="right")
    neighbours.add_column("peaks on")
    described = index.describe([f for f, _ in r.neighbours[:5]])
    for f, cos in r.neighbours[:5]:
        neighbours.add_row(str(f), f"{cos:.2f}", described[f])
    grid = Table.grid(padding=(0, 4))
    grid.add_row(
        _tokens_table("promotes", r.promoted[:8], "green"),
        _tokens_table("suppresses", r.suppressed[:8], "red"),
        neighbours,
    )
    out.print(grid)
    if r.neurons:
        out.print("neurons: " + ", ".join(f"{n} ({w:+.2f})" for n, w in r.neurons[:8]))
    scale, mark = r.max_activation, plain(out)
    top = [example_text(e, scale, mark=mark) for e in r.top[:examples]]
    out.print(Panel(Group(*top) if top else Text("never fired"), title="top activations"))
    by_quantile = [
        example_text(e, scale, mark=mark) for q in sorted({q for q, _ in r.samples}, reverse=True)
        for e in [e for qq, e in r.samples if qq == q][:2]
    ]  # fmt: skip
    if by_quantile:
        out.print(Panel(Group(*by_quantile), title="sampled, from high to low quantile"))
    if r.zeros:
        zeros = [example_text(e, scale, label=False) for e in r.zeros]
        out.print(Panel(Group(*zeros), title="silent on"))


def score_cell(score: ScoreRecord | None) -> str:
    """``0.72 [0.61, 0.83] n=20, 3 unparsed``: a score, its 95% interval and what it rests on."""
    if score is None:
        return "–"
    unparsed = f", {score.n_unparsed} unparsed" if score.n_unparsed else ""
    if score.score is None:
        return f"none parsed (n=0{unparsed})"
    interval = "" if score.ci_low is None else f" [{score.ci_low:.2f}, {score.ci_high:.2f}]"
    return f"{score.score:.2f}{interval} n={score.n}{unparsed}"


def _explanation_cells(e: ExplanationRecord) -> list[list[str | Text]]:
    """One row per scorer of ``e``: explainer, text, the three scores, scorer."""
    rows: list[list[str | Text]] = []
    for scorer in sorted({s.scorer for s in e.scores}) or [""]:
        mine = {s.method: s for s in e.scores if s.scorer == scorer}
        text = e.text if e.text is not None else "(answer unparsed)"
        if e.source_feature is not None:
            text += f" (of feature {e.source_feature})"
        scores = [score_cell(mine.get(m)) for m in SCORE_METHODS]
        rows.append([Text(e.explainer), Text(text), *scores, Text(scorer)])  # data, not markup
    return rows


def _explanations_rows(explanations: list[ExplanationRecord]) -> Table:
    """The explanations of one feature (the ``show`` panel; no feature column)."""
    table = Table(title="explanations (scores: 95% bootstrap interval, items)", box=None)
    for column in ("explainer", "explanation", *SCORE_METHODS, "scorer"):
        table.add_column(column)
    for e in explanations:
        for cells in _explanation_cells(e):
            table.add_row(*cells)
    return table


def explanations_table(index: FeatureIndex, features: list[int]) -> Table:
    """Every explanation of ``features`` beside its baselines, with their scores."""
    table = Table(title="explanations and their scores (95% bootstrap interval, items)")
    for column in ("feature", "explainer", "explanation", *SCORE_METHODS, "scorer"):
        table.add_column(column)
    for f in features:
        rows = [cells for e in index.explanations(f) for cells in _explanation_cells(e)]
        for i, cells in enumerate(rows):
            table.add_row(str(f) if i == 0 else "", *cells, end_section=i == len(rows) - 1)
    return table
