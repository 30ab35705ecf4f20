"""Terminal rendering of feature records (rich)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from saescope.interpret.neurons import Example
from saescope.interpret.query import FeatureIndex, FeatureRecord


def example_text(example: Example, scale: float, label: bool = True) -> Text:
    """Tokens shaded by activation (white to orange), the peak underlined."""
    line = Text(f"{example.activation:8.2f}  " if label else "          ")
    for i, (token, act) in enumerate(zip(example.tokens, example.activations, strict=True)):
        level = 0.0 if scale <= 0 else min(max(act / scale, 0.0), 1.0)
        green, blue = int(255 - 145 * level), int(255 - 255 * level)
        style = f"black on rgb(255,{green},{blue})" if level > 0 else ""
        if i == example.focus and act > 0:
            style += " underline"
        line.append(token.replace("\n", "⏎"), style=style)
    return line


def _tokens_table(title: str, rows: list[tuple[str, float]], colour: str) -> Table:
    table = Table(title=title, title_justify="left", box=None)
    table.add_column("token", style=colour)
    table.add_column("logit", justify="right")
    for token, value in rows:
        table.add_row(repr(token), f"{value:+.3g}")
    return table


def render_feature(console: Console, index: FeatureIndex, r: FeatureRecord, examples: int) -> None:
    meta = index.meta
    console.rule(f"[bold]feature {r.feature}[/bold]  ·  {meta['site']}  ·  {meta.get('model')}")
    if r.explanation:
        console.print(f"[bold]explanation[/bold]: {r.explanation}")
    console.print(
        f"peaks on {r.top_tokens or '–'}\nfires on {r.density:.3%} of {meta['tokens']:,} tokens "
        f"({r.fires:,}), max {r.max_activation:.3g}, mean when firing {r.mean_activation or 0:.3g}"
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
    console.print(grid)
    if r.neurons:
        console.print("neurons: " + ", ".join(f"{n} ({w:+.2f})" for n, w in r.neurons[:8]))
    scale = r.max_activation
    top = [example_text(e, scale) for e in r.top[:examples]]
    console.print(Panel(Group(*top) if top else Text("never fired"), title="top activations"))
    by_quantile = [
        example_text(e, scale) for q in sorted({q for q, _ in r.samples}, reverse=True)
        for e in [e for qq, e in r.samples if qq == q][:2]
    ]  # fmt: skip
    if by_quantile:
        console.print(Panel(Group(*by_quantile), title="sampled, from high to low quantile"))
    if r.zeros:
        zeros = [example_text(e, scale, label=False) for e in r.zeros]
        console.print(Panel(Group(*zeros), title="silent on"))
