"""Commands that read features: ``index``, ``features``, ``show``, ``search``, ``dashboard``,
``families``."""

from __future__ import annotations

import argparse
from typing import Any

from saescope.cli.common import add_command, add_data_args, add_model_args, context_config, ints
from saescope.cli.model import add_prompt_args, check_prompt


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
    )
    size = path.stat().st_size / 2**20
    print(f"index: {path} ({size:.1f} MiB)\nnext:  saescope show --index {path} FEATURE")


def _source(args: argparse.Namespace, model: Any) -> Any:
    from saescope.errors import SaescopeError
    from saescope.interpret.sources import neuron_source, sae_source

    if args.sae:
        return sae_source(args.sae, args.site)
    if args.site:
        return neuron_source(model, args.site)
    raise SaescopeError("give --sae DIR (its features) or --site SITE (raw neurons)")


def cmd_features(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saescope.errors import SaescopeError
    from saescope.interpret.active import active_features, describe_features
    from saescope.interpret.query import FeatureIndex
    from saescope.models import load_model

    if args.top < 1:
        raise SaescopeError(f"--top (features per token) must be >= 1, got {args.top}")
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    check_prompt(model, args)
    source = _source(args, model)
    tokens = active_features(model, source, args.prompt, args.top)
    if args.last:
        tokens = tokens[-1:]
    index = FeatureIndex(args.index) if args.index else None
    wanted = [f for t in tokens for f, _ in t.features]
    described = describe_features(model, source, wanted, index)
    table = Table(title=f"{source.kind} at {source.site} on {args.prompt!r}")
    for column in ("pos", "token", "feature", "act", "description"):
        table.add_column(column, justify="right" if column in ("pos", "feature", "act") else "left")
    for t in tokens:
        if t.excluded or not t.features:
            table.add_row(str(t.position), repr(t.token), "–", "", "excluded" if t.excluded else "")
            continue
        for i, (f, v) in enumerate(t.features):
            first = i == 0
            table.add_row(
                str(t.position) if first else "",
                repr(t.token) if first else "",
                str(f),
                f"{v:.2f}",
                described[f],
                end_section=i == len(t.features) - 1,
            )
    Console().print(table)


def cmd_show(args: argparse.Namespace) -> None:
    from rich.console import Console

    from saescope.cli.render import render_feature
    from saescope.interpret.query import FeatureIndex

    with FeatureIndex(args.index) as index:
        render_feature(Console(), index, index.feature(args.feature), args.examples)


def cmd_search(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from saescope.interpret.query import FeatureIndex

    with FeatureIndex(args.index) as index:
        hits = index.search(args.query, args.limit)
    table = Table(title=f"features matching {args.query!r}")
    for column in ("feature", "score", "density", "peaks on"):
        table.add_column(column)
    for hit in hits:
        table.add_row(str(hit.feature), f"{hit.score:g}", f"{hit.density:.3%}", hit.top_tokens)
    Console().print(table if hits else f"no feature matches {args.query!r}")


def cmd_dashboard(args: argparse.Namespace) -> None:
    from saescope.interpret.dashboard import write_dashboards
    from saescope.interpret.query import FeatureIndex

    with FeatureIndex(args.index) as index:
        path = write_dashboards(index, args.features, args.out)
    print(f"dashboards: {path}")


def cmd_families(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

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
    console = Console()
    console.print(table)
    _print_family_baseline(console, family_baseline(narrow, wide, args.threshold))


def _print_family_baseline(console: Any, baseline: Any) -> None:
    """The match statistics against the wide SAE and against its shuffled decoder (families)."""
    from rich.table import Table

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
        "direction promotes.",
    )
    p.add_argument("--sae", help="SAE directory")
    p.add_argument("--site", help="site (default: the SAE's); alone, raw neurons of that site")
    add_prompt_args(p)
    p.add_argument("--index", help="feature index for descriptions")
    p.add_argument("--top", type=int, default=5, help="features per token")
    p.add_argument("--last", action="store_true", help="only the last token")
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
        "find features by text",
        "Features whose peak tokens, top-context texts or promoted tokens contain the query "
        "(case-insensitive); a match at the peak counts most.",
    )
    p.add_argument("query")
    p.add_argument("--index", required=True, help="feature index (saescope index)")
    p.add_argument("--limit", type=int, default=20)

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
