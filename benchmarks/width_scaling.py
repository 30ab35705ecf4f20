"""Held-out FVU against SAE width at equal tokens, with the training defaults.

Trains one TopK SAE per width (k fixed) on the same cache with the same seed, so every width
sees the same batches in the same order (each width in its own run, so that its time is its
own), holds out the cache's last shard(s) and scores each SAE on them. Appends one JSON line per
width to ``benchmarks/results/width_scaling.jsonl``; ``benchmarks/width_scaling.md`` copies them.

    python benchmarks/width_scaling.py --acts /work/runs/qs6/activations \
        --out /work/runs/width/after --label after
    python benchmarks/width_scaling.py ... --lr 2.26e-3 --label const-lr   # one lr for all
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _record import append, environment

from saescope.jobs import train_saes
from saescope.train import OptimConfig


def metrics_tail(path: Path) -> dict[str, float]:
    """The base LR (the largest logged) and the training FVU at 3/4 and at the end of training."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    fvu = [r["fvu"] for r in records]
    return {
        "lr": max(r["lr"] for r in records),
        "train_fvu_at_75pct": fvu[(3 * len(fvu)) // 4 - 1],
        "train_fvu_end": fvu[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--acts", required=True, help="activation cache (read only)")
    parser.add_argument("--out", required=True, help="where the SAEs go")
    parser.add_argument("--label", required=True, help="names the condition in the records")
    parser.add_argument("--widths", default="2048,8192,32768")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--tokens", type=int, help="default: one epoch of the training rows")
    parser.add_argument("--holdout-rows", type=int, default=50_000)
    parser.add_argument("--lr", type=float, help="one LR for every width (default: the rule)")
    args = parser.parse_args()
    env = environment()
    for width in [int(w) for w in args.widths.split(",")]:
        out = Path(args.out) / f"w{width}"
        settings = {"optim": OptimConfig(lr=args.lr)} if args.lr else {}
        start = time.perf_counter()
        [trained] = train_saes(
            out,
            cache_dir=args.acts,
            widths=[width],
            ks=[args.k],
            tokens=args.tokens,
            holdout_rows=args.holdout_rows,
            progress=False,
            **settings,
        )
        seconds = time.perf_counter() - start
        summary = json.loads((out / "summary.json").read_text())[trained.name]
        assert trained.heldout is not None
        append(
            "width_scaling",
            {
                **env,
                "label": args.label,
                "width": width,
                "k": args.k,
                "train_tokens": summary["train_tokens"],
                "heldout_tokens": trained.heldout.tokens,
                "heldout_fvu": trained.heldout.fvu,
                "heldout_dead_fraction": trained.heldout.dead_fraction,
                "dead_fraction_train": summary["dead_fraction_train"],
                **metrics_tail(out / trained.name / "metrics.jsonl"),
                "seconds": round(seconds, 1),
                "threads": torch.get_num_threads(),
            },
        )


if __name__ == "__main__":
    main()
