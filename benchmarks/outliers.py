"""The outlier policy, measured: keep vs downweight vs exclude on one cache, same everything else.

1. The row-norm distribution of the cache (quantiles; rows and tokens each multiple flags).
2. Per policy: ``saescope train`` (TopK, width 8192, k 32, 1 epoch, last 65,536 rows held out),
   ``saescope eval`` on the held-out rows (FVU on all rows and without outliers, dead and dense
   fractions), ``saescope index`` over ``--index-tokens`` rows (features whose top contexts all
   peak on outlier rows / outlier token ids; dense features by ``interpret.query.is_dense``).
Writes OUT/results.json and prints the markdown table of benchmarks/outliers.md.

    PYTHONPATH=src python benchmarks/outliers.py --acts /work/runs/qs6/activations \
        --out /work/runs/outlier --multiple 5
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

import torch

from saescope.activations import open_activations
from saescope.activations.shards import acts_key
from saescope.cli import main
from saescope.interpret.query import is_dense

MODES = ("keep", "downweight", "exclude")


def norm_survey(acts: str, multiples: list[float]) -> tuple[dict, set, set]:
    """Quantiles of the row norms, what each multiple flags, and (at the chosen multiple, the
    first of ``multiples``) the outlier rows as (context, position) and their token ids."""
    cache = open_activations(acts)
    site = cache.site()
    norms, tokens, where = [], [], []
    for i in range(len(cache.manifest.shards)):
        shard = cache.load_shard(i, verify=False)
        norms.append(cache.shard_norms(shard, site))
        tokens.append(shard["tokens"].long())
        where.append(torch.stack([shard["context"].long(), shard["position"].long()], 1))
        del shard[acts_key(site)]
    n, t, w = torch.cat(norms), torch.cat(tokens), torch.cat(where)
    median = cache.median_norm(site)
    qs = [0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0]
    survey: dict = {
        "rows": len(n),
        "median_first_shard": median,
        "median_all": float(n.median()),
        "quantiles": {str(q): float(torch.quantile(n.double(), q)) for q in qs},
        "multiples": {},
    }
    for m in multiples:
        mask = n > m * median
        ids, counts = torch.unique(t[mask], return_counts=True)
        survey["multiples"][str(m)] = {
            "threshold": m * median,
            "rows": int(mask.sum()),
            "fraction": float(mask.double().mean()),
            "tokens": {int(i): int(c) for i, c in zip(ids, counts, strict=True)},
        }
    mask = n > multiples[0] * median
    rows = {(int(c), int(p)) for c, p in w[mask].tolist()}
    return survey, rows, {int(i) for i in t[mask].unique()}


def index_counts(db: Path, outlier_rows: set, outlier_tokens: set) -> dict:
    con = sqlite3.connect(db)
    tops: dict[int, list[tuple[int, int, int]]] = {}
    sql = "SELECT feature, context, position, token_ids, focus FROM examples WHERE kind='top'"
    for feature, context, position, ids, focus in con.execute(sql):
        token = int.from_bytes(ids[4 * focus : 4 * focus + 4], "little", signed=True)
        tops.setdefault(feature, []).append((context, position, token))
    densities = [d for (d,) in con.execute("SELECT density FROM features")]
    con.close()
    on_rows = sum(all((c, p) in outlier_rows for c, p, _ in ex) for ex in tops.values())
    on_tokens = sum(all(tok in outlier_tokens for _, _, tok in ex) for ex in tops.values())
    return {
        "features_with_top": len(tops),
        "all_top_on_outlier_rows": on_rows,
        "all_top_on_outlier_tokens": on_tokens,
        "dense_in_index": sum(is_dense(d) for d in densities),
        "features": len(densities),
    }


def cli(argv: list[str]) -> None:
    code = main(argv)
    if code != 0:
        raise SystemExit(f"saescope {' '.join(argv)} exited {code}")


def run_policy(args: argparse.Namespace, mode: str, outlier_rows: set, tokens: set) -> dict:
    root = Path(args.out) / mode
    flags = ["--outliers", mode, "--outlier-multiple", str(args.multiple)]
    start = time.perf_counter()
    cli(["train", "--acts", args.acts, "--out", str(root / "saes"), "--arch", "topk",
          "--width", "8192", "--k", "32", "--epochs", "1", "--holdout", "65536",
          *flags])  # fmt: skip
    train_s = time.perf_counter() - start
    sae = root / "saes" / "topk-w8192-k32"
    cli(["eval", "--sae", str(sae), "--acts", args.acts, "--out", str(root / "report"),
          "--tokens", "65536", *flags])  # fmt: skip
    metrics = json.loads((root / "report" / "metrics.json").read_text())["saes"][sae.name]
    db = root / "index.db"
    cli(["index", "--sae", str(sae), "--acts", args.acts, "--out", str(db), "--overwrite",
          "--tokens", str(args.index_tokens), *flags])  # fmt: skip
    return {
        "train_seconds": train_s,
        "all": metrics["reconstruction"],
        "without_outliers": metrics["without_outliers"],
        "outliers": metrics["outliers"],
        "index": index_counts(db, outlier_rows, tokens),
    }


def table(results: dict) -> str:
    lines = [
        "| policy | FVU all rows | FVU w/o outliers | dead | dense (eval) | dense (index) "
        "| features, top all on outlier rows | ... on outlier tokens | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in results["policies"].items():
        a, w, i = r["all"], r["without_outliers"], r["index"]
        lines.append(
            f"| {mode} | {a['fvu']:.4f} | {w['fvu']:.4f} | {a['dead_fraction']:.3f} "
            f"| {a['dense_fraction']:.4f} | {i['dense_in_index']} | "
            f"{i['all_top_on_outlier_rows']} | {i['all_top_on_outlier_tokens']} "
            f"| {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main_() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--acts", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--multiple", type=float, default=5.0)
    p.add_argument("--index-tokens", type=int, default=131_072)
    p.add_argument("--modes", default=",".join(MODES))
    args = p.parse_args()
    survey, rows, tokens = norm_survey(args.acts, [args.multiple, 2, 3, 4, 10])
    results: dict = {"survey": survey, "multiple": args.multiple, "policies": {}}
    for mode in args.modes.split(","):
        results["policies"][mode] = run_policy(args, mode, rows, tokens)
        Path(args.out, "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(survey, indent=1))
    print(table(results))


if __name__ == "__main__":
    main_()
