"""Commands that read features: ``index``, ``features``, ``show``, ``search``, ``dashboard``,
``families``."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

from saescope.cli.common import (
    add_command,
    add_data_args,
    add_encoder_arg,
    add_model_args,
    add_outlier_args,
    context_config,
    ints,
    outlier_policy,
)
from saescope.cli.model import add_prompt_args, check_prompt

if TYPE_CHECKING:
    from saescope.interpret.active import Ranking
    from saescope.interpret.query import FeatureIndex


def cmd_index(args: argparse.Namespace) -> None:
    from saescope.data import load_corpus
    from saescope.interpret.build import index_features
    from saescope.interpret.collect import CollectConfig

    before, after = args.window
    path = index_features(
        args.out,
        sae_dir=args.sae,
        site=args.site,
        model=args.model,  # None: the cache's own model, else the default
        dtype=args.dtype,
        device=args.device,
        cache_dir=args.acts,
        corpus=None if args.acts else load_corpus(args.dataset, text_field=args.text_field),
        context=context_config(args),
        tokens=args.tokens,
        collect=CollectConfig(
            top=args.top, samples=args.samples, zeros=args.zeros, before=before, after=after
        ),
        resume=args.resume,
        overwrite=args.overwrite,
        outliers=outlier_policy(args),
        encoder=args.encoder,
    )
    size = path.stat().st_size / 2**20
    print(f"index: {path} ({size:.1f} MiB)\nnext:  saescope show --index {path} FEATURE")


def _source(args: argparse.Namespace, model: Any) -> Any:
    from saescope.errors import SaescopeError
    from saescope.interpret.sources import neuron_source, sae_source

    if args.sae:
        return sae_source(args.sae, args.site, args.encoder)
    if args.site:
        return neuron_source(model, args.site)
    raise SaescopeError("give --sae DIR (its features) or --site SITE (raw neurons)")


def _ranking(args: argparse.Namespace, index: FeatureIndex | None) -> Ranking | None:
    """The ``--rank`` of ``features``: None orders a token's features by activation."""
    from saescope.errors import SaescopeError
    from saescope.interpret.active import relative_to, typical_activations

    if args.rank in ("activation", "attribution"):  # attribution: _features_by_attribution
        return None
    if index is None:
        raise SaescopeError(
            f"--rank {args.rank} needs --index: a feature's typical activation comes from its "
            "index (saescope index --sae ...)"
        )
    return relative_to(typical_activations(index))


def cmd_features(args: argparse.Namespace) -> None:
    from rich.text import Text

    from saescope.cli.render import Table, console
    from saescope.errors import SaescopeError
    from saescope.interpret.active import active_features, check_index, describe_features
    from saescope.interpret.query import FeatureIndex
    from saescope.models import load_model

    if args.top < 1:
        raise SaescopeError(f"--top (features per token) must be >= 1, got {args.top}")
    index = FeatureIndex(args.index) if args.index else None
    rank = _ranking(args, index)
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    check_prompt(model, args)
    source = _source(args, model)
    if index is not None:
        check_index(index, source)
    if args.rank == "attribution":
        _features_by_attribution(model, source, args, index)
        return
    tokens = active_features(model, source, args.prompt, args.top, rank)
    if args.last:
        tokens = tokens[-1:]
    wanted = [f for t in tokens for f, _ in t.features]
    described = describe_features(model, source, wanted, index)
    density = index.firing().density if index is not None else None
    columns = ["pos", "token", "feature", "act"]
    columns += [] if rank is None else [args.rank]
    columns += [] if density is None else ["density"]
    table = Table(title=f"{source.kind} at {source.site} on {args.prompt!r}, by {args.rank}")
    for column in (*columns, "description"):
        table.add_column(column, justify="left" if column in ("token", "description") else "right")
    for t in tokens:
        if t.excluded or not t.features:
            blank = [""] * (len(columns) - 3)
            note = "excluded" if t.excluded else ""
            table.add_row(str(t.position), Text(repr(t.token)), "–", *blank, note)
            continue
        for i, ((f, v), score) in enumerate(zip(t.features, t.scores, strict=True)):
            cells: list[str | Text] = [str(t.position), Text(repr(t.token))] if i == 0 else ["", ""]
            cells += [str(f), f"{v:.2f}"]
            if rank is not None:
                cells.append(f"{score:#.3g}" if score < math.inf else "unseen")
            if density is not None:
                cells.append(_density_cell(float(density[f])))
            # Text: a description is data (a token such as '[/' is no markup)
            table.add_row(*cells, Text(described[f]), end_section=i == len(t.features) - 1)
    console().print(table)


def _density_cell(density: float) -> str:
    from saescope.interpret.query import is_dense

    return f"{density:.2%}" + (" [bold]dense[/bold]" if is_dense(density) else "")


def _features_by_attribution(
    model: Any, source: Any, args: argparse.Namespace, index: FeatureIndex | None
) -> None:
    """``features --rank attribution``: per token, its features ranked by activation x gradient
    of the logit of the token the model predicts there (``steer.attribute``)."""
    from rich.text import Text

    from saescope.cli.render import Table, console
    from saescope.interpret.active import describe_features
    from saescope.steer.attribute import next_token_attribution

    rows = next_token_attribution(model, args.prompt, source.sae, source.site, args.top)
    rows = rows[-1:] if args.last else rows
    described = describe_features(model, source, [u for r in rows for u, _, _ in r.units], index)
    table = Table(
        title=f"{source.kind} at {source.site} on {args.prompt!r}, by attribution to the "
        "logit of the predicted next token"
    )
    density = index.firing().density if index is not None else None
    columns = ["pos", "token", "next", "feature", "attribution", "act"]
    columns += [] if density is None else ["density"]
    for column in (*columns, "description"):
        numeric = column not in ("token", "next", "description")
        table.add_column(column, justify="right" if numeric else "left")
    for r in rows:
        if not r.units:
            blank = [""] * (len(columns) - 4)
            excluded = "excluded" if r.excluded else ""
            table.add_row(str(r.position), repr(r.token), repr(r.predicted), "–", *blank, excluded)
            continue
        for i, (unit, attribution, act) in enumerate(r.units):
            first = i == 0
            table.add_row(
                str(r.position) if first else "",
                repr(r.token) if first else "",
                repr(r.predicted) if first else "",
                str(unit),
                f"{attribution:+.3f}",
                f"{act:.2f}",
                *([] if density is None else [_density_cell(float(density[unit]))]),
                Text(described[unit]),  # data, not markup
                end_section=i == len(r.units) - 1,
            )
    console().print(table)


def cmd_show(args: argparse.Namespace) -> None:
    from saescope.cli.render import console, render_feature
    from saescope.interpret.query import FeatureIndex

    with FeatureIndex(args.index) as index:
        render_feature(console(), index, index.feature(args.feature), args.examples)


def cmd_search(args: argparse.Namespace) -> None:
    from rich.markup import escape

    from saescope.cli.render import Table, console
    from saescope.errors import SaescopeError
    from saescope.interpret.query import FeatureIndex

    if args.contrast and not args.text:
        raise SaescopeError("--contrast compares against --text: give the texts too")
    if bool(args.query) == bool(args.text):
        raise SaescopeError(
            "give a WORD to search the index for, or --text (with --sae) to search by example; "
            f"got {'both' if args.query else 'neither'}"
        )
    with FeatureIndex(args.index) as index:
        if args.text:
            title, columns, rows = _search_by_example(args, index)
        else:
            hits = index.search(args.query, args.limit)
            described = index.describe([h.feature for h in hits])
            title = f"features matching {args.query!r}"
            columns = ("feature", "match", "share", "density", "description")
            rows = [
                (str(h.feature), h.reason + ("" if h.whole else " (part)"), f"{h.score:.2f}",
                 f"{h.density:.3%}", described[h.feature])
                for h in hits
            ]  # fmt: skip
    table = Table(title=escape(title))
    for column in columns:
        table.add_column(column)
    for row in rows:  # escaped: a description's "[dense 47%]" is not rich markup
        table.add_row(*(escape(cell) for cell in row))
    console().print(table if rows else escape(f"no feature matches ({title})"))


def _search_by_example(args: argparse.Namespace, index: Any) -> tuple[str, tuple, list[tuple]]:
    from saescope.errors import SaescopeError
    from saescope.interpret.find import search_by_example
    from saescope.interpret.sources import sae_source
    from saescope.models import load_model

    if not args.sae:
        raise SaescopeError("search by example runs the SAE: give --sae DIR (the index's SAE)")
    model = load_model(args.model or index.meta["model"], dtype=args.dtype, device=args.device)
    hits = search_by_example(
        model, sae_source(args.sae), index, args.text, args.contrast, args.limit
    )
    described = index.describe([h.feature for h in hits])
    columns = (
        "feature",
        "score",
        "rate",
        "density",
        "contrast",
        "texts",
        "fires on",
        "description",
    )
    rows = [
        (str(h.feature), f"{h.score:.1f}", f"{h.rate:.3f}", f"{h.density:.3%}",
         "" if h.contrast is None else f"{h.contrast:.3f}", f"{h.texts}/{len(args.text)}",
         ", ".join(f"{t!r} {v:.2f}" for t, v in h.tokens), described[h.feature])
        for h in hits
    ]  # fmt: skip
    return f"features firing specifically on {len(args.text)} text(s)", columns, rows


def cmd_dashboard(args: argparse.Namespace) -> None:
    from saescope.interpret.dashboard import write_dashboards
    from saescope.interpret.query import FeatureIndex

    with FeatureIndex(args.index) as index:
        path = write_dashboards(index, args.features, args.out)
    print(f"dashboards: {path}")


def cmd_families(args: argparse.Namespace) -> None:
    from saescope.cli.render import Table, console
    from saescope.interpret.families import family_baseline, feature_families, split_features
    from saescope.interpret.query import FeatureIndex
    from saescope.sae import load_sae

    narrow, wide = load_sae(args.narrow), load_sae(args.wide)
    families = feature_families(narrow, wide, args.features, args.threshold)
    if not args.features:
        families = split_features(families)[: args.limit]
    describe_narrow = FeatureIndex(args.narrow_index).describe if args.narrow_index else None
    describe_wide = FeatureIndex(args.wide_index).describe if args.wide_index else None
    table = Table(title=f"features of {args.narrow} split in {args.wide}")
    for column in ("narrow", "peaks on", "wide", "cos", "peaks on "):
        table.add_column(column)
    for family in families:
        parent = describe_narrow([family.parent])[family.parent] if describe_narrow else ""
        kids = [c for c, _ in family.children]
        described = describe_wide(kids) if describe_wide else {}
        for i, (child, cos) in enumerate(family.children):
            table.add_row(
                str(family.parent) if i == 0 else "",
                parent if i == 0 else "",
                str(child),
                f"{cos:.2f}",
                described.get(child, ""),
                end_section=i == len(family.children) - 1,
            )
    out = console()
    out.print(table)
    _print_family_baseline(out, family_baseline(narrow, wide, args.threshold))


def _print_family_baseline(console: Any, baseline: Any) -> None:
    """The match statistics against the wide SAE and against its shuffled decoder (families)."""
    from saescope.cli.render import Table

    table = Table(
        title=f"all {baseline.n_parents} narrow features: the wide decoder against its shuffled "
        "copy (each dimension's values permuted across rows)"
    )
    for column in ("decoder", "best cos p10/p50/p90", f"best >= {baseline.threshold:g}",
                   f">= {baseline.min_children} children", "same index"):  # fmt: skip
        table.add_column(column)
    for name, stats in (("wide", baseline.real), ("shuffled", baseline.shuffled)):
        q = stats.best_cosine_quantiles
        table.add_row(
            name,
            f"{q['p10']:.2f} / {q['p50']:.2f} / {q['p90']:.2f}",
            f"{stats.matched_fraction:.1%}",
            f"{stats.split_fraction:.1%}",
            f"{stats.same_index_fraction:.1%}",
        )
    console.print(table)
    console.print(
        f"{baseline.above_chance_fraction:.1%} of the narrow features match a wide one closer "
        "than any feature matches the shuffled decoder"
    )


def register(sub: Any) -> None:
    from saescope.interpret.active import FEATURE_RANKINGS
    from saescope.interpret.query import DENSE_DENSITY

    p = add_command(
        sub,
        "index",
        cmd_index,
        "build the feature index of an SAE (or of raw neurons) in one pass",
        "Stream activations once (a cache with --acts, or the model live on --dataset) and "
        "record per feature: firing density, mean/max activation and a log10 histogram, the "
        "--top contexts where it is largest, a uniform sample of where it fires (shown by "
        "quantile), a few contexts where it is silent; from the weights, the tokens it "
        "promotes and suppresses and its nearest neighbours. Memory is bounded by features x "
        "examples whatever --tokens is. Writes one SQLite file; an interrupted build "
        "continues with --resume. Without --sae, --site (an mlp_act site) indexes raw neurons.",
    )
    p.add_argument("--sae", help="SAE directory (omit to index the raw neurons of --site)")
    add_encoder_arg(p)
    p.add_argument("--site", help="site (default: the SAE's own)")
    p.add_argument("--acts", help="activation cache to read instead of running the model")
    p.add_argument("--out", required=True, help="index file to write (e.g. index.db)")
    p.add_argument("--tokens", type=int, default=1_000_000, help="tokens to scan")
    p.add_argument("--top", type=int, default=20, help="top contexts per feature")
    p.add_argument("--samples", type=int, default=10, help="sampled contexts per feature")
    p.add_argument("--zeros", type=int, default=3, help="non-firing contexts per feature")
    p.add_argument(
        "--window", type=ints, default=[20, 5], help="tokens before,after the peak of an example"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted build")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index")
    add_outlier_args(p)
    add_model_args(p)
    p.set_defaults(model=None)
    add_data_args(p)

    p = add_command(
        sub,
        "features",
        cmd_features,
        "which features fire on a prompt, token by token",
        "Run the prompt, encode the site's activations with the SAE and list, per token, the "
        "largest features with their activation and a short description: from --index (its "
        "explanation, else the tokens its top examples peak on), else the tokens its decoder "
        "direction promotes. With --index, each feature's density (the fraction of indexed "
        f"tokens it fires on), flagged dense above {DENSE_DENSITY:.0%}: a dense feature's top "
        "contexts say little about what it does on the rest.",
    )
    p.add_argument("--sae", help="SAE directory")
    add_encoder_arg(p)
    p.add_argument("--site", help="site (default: the SAE's); alone, raw neurons of that site")
    add_prompt_args(p)
    p.add_argument("--index", help="feature index for descriptions")
    p.add_argument("--top", type=int, default=5, help="features per token")
    p.add_argument("--last", action="store_true", help="only the last token")
    p.add_argument(
        "--rank",
        choices=(*FEATURE_RANKINGS, "attribution"),
        default=FEATURE_RANKINGS[0],
        help="order a token's features by activation (default), or by activation relative to "
        "the feature's typical activation in the --index, the median of its sampled contexts "
        "(each at its peak; a ratio, 'unseen' where the index never saw it fire), so that a "
        "feature unusually active here comes first and one that fires everywhere drops back. "
        "The median rather than the mean when firing: a dense feature fires weakly on most "
        "tokens, so against its mean any strong token looks unusual (on the quickstart SAE "
        "the dense apostrophe features came first again). attribution: by activation x gradient "
        "of the logit of the token the model predicts next at that position (float32, one "
        "backward pass per token).",
    )
    add_model_args(p)

    p = add_command(
        sub,
        "show",
        cmd_show,
        "a feature's dashboard in the terminal",
        "Density, activations, the tokens it promotes and suppresses, its neighbours, and its "
        "top contexts highlighted by activation, from a feature index.",
    )
    p.add_argument("feature", type=int)
    p.add_argument("--index", required=True, help="feature index (saescope index)")
    p.add_argument("--examples", type=int, default=10, help="top contexts to show")

    p = add_command(
        sub,
        "search",
        cmd_search,
        "find features by a word, or by example texts",
        "With WORD: features whose peak tokens (top or sampled examples), explanation, promoted "
        "tokens or example texts match it (case-insensitive), in that order, a whole token or "
        "word before part of one, then by how concentrated the feature is on the match. With "
        "--text (one or more) and --sae: run the texts through the model and rank the SAE's "
        "features by how much more they fire on the texts' tokens than they usually do (the "
        "index) and than on the --contrast texts; dense features come last, flagged.",
    )
    p.add_argument("query", nargs="?", metavar="WORD", help="word to search the index for")
    p.add_argument("--index", required=True, help="feature index (saescope index)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--sae", help="the index's SAE directory (search by example)")
    p.add_argument(
        "--text", action="append", help="a text showing the concept (repeat for several)"
    )
    p.add_argument(
        "--contrast", action="append", help="a text without the concept (repeat for several)"
    )
    add_model_args(p)
    p.set_defaults(model=None)  # None: the index's own model

    p = add_command(
        sub,
        "dashboard",
        cmd_dashboard,
        "static HTML dashboards for chosen features",
        "One self-contained HTML page per feature (contexts highlighted by activation, "
        "histogram, logit tables, neighbours) and OUT/index.html; open it in any browser.",
    )
    p.add_argument("--index", required=True, help="feature index (saescope index)")
    p.add_argument("--features", type=ints, required=True, help="comma-separated feature ids")
    p.add_argument("--out", required=True, help="output directory")

    p = add_command(
        sub,
        "families",
        cmd_families,
        "how features of a narrow SAE split in a wider one",
        "Match two SAEs trained on the same site by decoder cosine: for each feature of the "
        "narrow SAE (or those of --features), the wide SAE's features above --threshold. "
        "Without --features, lists the features that split into the most children.",
    )
    p.add_argument("--narrow", required=True, help="the narrower SAE's directory")
    p.add_argument("--wide", required=True, help="the wider SAE's directory")
    p.add_argument("--features", type=ints, help="narrow features to show")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum decoder cosine")
    p.add_argument("--limit", type=int, default=10, help="families to list without --features")
    p.add_argument("--narrow-index", help="index of the narrow SAE, for descriptions")
    p.add_argument("--wide-index", help="index of the wide SAE, for descriptions")
