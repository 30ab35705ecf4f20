"""``saescope toy`` (toy models of superposition) and ``saescope bench synthetic`` (every SAE
architecture against a known dictionary)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from saescope.cli.common import add_command, add_field

log = logging.getLogger(__name__)


def _bench_config(args: argparse.Namespace, **overrides: object):  # -> BenchConfig
    from saescope.toy.bench import BenchConfig

    given = {
        "steps": args.steps,
        "seed": args.seed,
        "architectures": tuple(args.architecture or ()),
    }
    return BenchConfig(**(given | overrides))


def cmd_toy(args: argparse.Namespace) -> None:
    from saescope.toy.report import run_toy
    from saescope.toy.superposition import ToyConfig

    cfg = ToyConfig(
        n_features=args.n_features, d_hidden=args.d_hidden, steps=args.toy_steps, seed=args.seed
    )
    density = cfg.n_features * (1 - args.sae_sparsity)
    bench = _bench_config(args, d_sae=2 * cfg.n_features, l0=max(1, round(density)))
    result = run_toy(args.out, cfg, tuple(args.sparsity), args.sae_sparsity, bench)
    out = Path(args.out)
    log.info("%s", (out / "toy.md").read_text())
    log.info(
        "wrote %s, %s and %s", out / "toy.json", out / "toy.md", ", ".join(result["plots"].values())
    )


def cmd_bench_synthetic(args: argparse.Namespace) -> None:
    from saescope.toy.report import bench_table, run_synthetic_bench
    from saescope.toy.synthetic import SyntheticConfig

    data = SyntheticConfig(d=args.d, n_free=args.n_free, l0=args.data_l0, seed=args.seed)
    bench = _bench_config(args, d_sae=args.d_sae, l0=args.l0)
    rows = run_synthetic_bench(args.out, data, bench)
    log.info("%s", bench_table(rows))
    log.info("wrote bench.json, bench.md and bench.png into %s", args.out)


def _common(p: argparse.ArgumentParser, default_out: str) -> None:
    from saescope.sae import ARCHITECTURES
    from saescope.toy.bench import BenchConfig

    p.add_argument("--out", default=default_out, help="folder for the table, plots and JSON")
    p.add_argument("--seed", type=int, default=0, help="seeds the data, the models and the SAEs")
    add_field(p, "--steps", BenchConfig, "steps", help="SAE training steps")
    p.add_argument(
        "--architecture",
        action="append",
        choices=sorted(ARCHITECTURES),
        help="train only these (repeat the flag; default: every registered architecture)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    from saescope.toy.bench import BenchConfig
    from saescope.toy.report import SPARSITIES
    from saescope.toy.superposition import ToyConfig
    from saescope.toy.synthetic import SyntheticConfig

    p = add_command(
        sub,
        "toy",
        cmd_toy,
        "toy models of superposition, and SAEs trained on their hidden layer",
        "Train the ReLU-output model x' = ReLU(W^T W x + b) and the linear model (n features in "
        "m dims, importance 0.7^i) at each feature sparsity S; draw W^T W and b, the feature "
        "norms coloured by superposition, the phase change across S and the feature "
        "dimensionality; then train every SAE architecture on the hidden activations at one S "
        "and score how well each recovers the represented features' directions. CPU, minutes.",
    )
    _common(p, "saescope-toy")
    add_field(p, "--n-features", ToyConfig, "n_features", help="features n")
    add_field(p, "--d-hidden", ToyConfig, "d_hidden", help="hidden dimensions m")
    add_field(p, "--toy-steps", ToyConfig, "steps", help="toy-model training steps")
    p.add_argument(
        "--sparsity", type=float, nargs="+", default=list(SPARSITIES), help="the values of S"
    )
    p.add_argument(
        "--sae-sparsity", type=float, default=0.97, help="S of the model the SAEs are trained on"
    )
    bench = sub.add_parser("bench", help="benchmarks with a known answer")
    group = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    p = add_command(
        group,
        "synthetic",
        cmd_bench_synthetic,
        "every SAE architecture against a known dictionary, at matched L0",
        "Generate activations from a known dictionary (Zipf firing frequencies, log-normal "
        "magnitudes, correlated groups, parent/child hierarchies, noise), train every "
        "registered architecture on them at matched L0, and score each: mean max cosine to "
        "the true dictionary, fraction recovered above 0.9, FVU, dead latents, absorption on "
        "the hierarchy. Writes bench.md, bench.json and bench.png.",
    )
    _common(p, "saescope-bench")
    add_field(p, "--d", SyntheticConfig, "d")
    add_field(p, "--n-free", SyntheticConfig, "n_free")
    add_field(p, "--data-l0", SyntheticConfig, "l0")
    add_field(p, "--d-sae", BenchConfig, "d_sae", help="SAE width")
    add_field(p, "--l0", BenchConfig, "l0")
