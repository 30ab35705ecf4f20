"""Commands that write saescope's results in other tools' formats: ``export neuronpedia``."""

from __future__ import annotations

import argparse

from saescope.cli.common import add_command, field_default, field_docs


def cmd_export_neuronpedia(args: argparse.Namespace) -> None:
    from saescope.interpret.neuronpedia import NeuronpediaConfig, export_neuronpedia

    cfg = NeuronpediaConfig(
        model_id=args.model_id, source_id=args.source_id, batch_size=args.batch_size
    )
    paths = export_neuronpedia(args.index, args.out, cfg)
    print(f"neuronpedia: {len(paths)} batch files in {args.out} (+ run_settings.json)")


def register(sub: argparse._SubParsersAction) -> None:
    from saescope.interpret.neuronpedia import NeuronpediaConfig

    group = sub.add_parser(
        "export",
        help="write an index or SAE in another tool's format",
        description="Write saescope's results in another tool's format.",
    )
    kinds = group.add_subparsers(dest="format", required=True, metavar="FORMAT")
    p = add_command(
        kinds,
        "neuronpedia",
        cmd_export_neuronpedia,
        "a feature index as Neuronpedia dashboard batches",
        "Write every feature of a feature index as batch-<i>.json files in the layout "
        "SAEDashboard's NeuronpediaRunner writes (sae-dashboard 0.8.0), which Neuronpedia's "
        "importer reads (convert-saedashboard-to-neuronpedia-export.py): top and quantile "
        "examples, promoted and suppressed tokens, density and activation histogram. The "
        "Neuronpedia source is <layer>-<source-id>.",
    )
    p.add_argument("--index", required=True, help="the feature index (saescope index --out)")
    p.add_argument("--out", required=True, help="directory for batch-*.json (new or empty)")
    docs = field_docs(NeuronpediaConfig)
    for name, kind in (("model_id", str), ("source_id", str), ("batch_size", int)):
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=field_default(NeuronpediaConfig, name),
            help=docs[name],
        )
