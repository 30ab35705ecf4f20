"""Scaling from one pass: a TopK width sweep, a power law for FVU and dead fraction against width,
and absorption / 5-sparse probing for every SAE of the sweep and the quickstart SAE.

    python examples/width_sweep.py --acts /work/runs/qs/activations --run RUN/sweep \\
        --quickstart /work/runs/qs/saes/topk-w8192-k32 --out docs

1. Train (unless ``RUN`` already holds them) TopK SAEs of ``--widths`` at k ``--k`` from one
   pass over the cache (``saescope train`` with a comma list of widths: same batches, same
   order); held-out FVU and dead fraction come from its ``summary.json``.
2. Fit ``y = a * width^b`` by least squares on log y against log width; report b and R^2 (of
   the log-log fit) for FVU and for the dead fraction; plot both on log-log axes.
3. For each SAE: first-letter absorption (``saescope.evaluate.absorption``) on the default
   tokenizer's words and k-sparse probing (``saescope.evaluate.probing``, k = 1, 2, 5, 20) on
   the default corpus's labels; the model's activations are computed once and shared.
4. Write OUT/absorption-probing.md and OUT/width-scaling.png. Nothing in them is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from saescope._plotting import pyplot
from saescope.cli import main as saescope_main
from saescope.evaluate.absorption import absorption, letter_data, letter_probe
from saescope.evaluate.probing import corpus_tasks, sparse_probing
from saescope.models import load_model
from saescope.sae import load_sae


def power_law(widths: list[int], ys: list[float]) -> tuple[float, float, float]:
    """(a, b, R^2) of log y = log a + b log width, least squares in log-log space."""
    X = torch.tensor([[1.0, math.log(w)] for w in widths], dtype=torch.float64)
    y = torch.tensor([math.log(max(v, 1e-12)) for v in ys], dtype=torch.float64)
    coef = torch.linalg.lstsq(X, y[:, None]).solution.squeeze(1)
    residual = y - X @ coef
    r2 = 1 - float(residual.pow(2).sum() / (y - y.mean()).pow(2).sum().clamp_min(1e-12))
    return math.exp(float(coef[0])), float(coef[1]), r2


def train(args: argparse.Namespace) -> float:
    if (Path(args.run) / "summary.json").exists():
        return 0.0
    start = time.time()
    widths = ",".join(str(w) for w in args.widths)
    argv = ["train", "--acts", args.acts, "--out", args.run, "--width", widths, "--k", str(args.k)]
    if saescope_main(argv) != 0:
        raise SystemExit("training failed")
    return time.time() - start


def plot(rows: list[dict], fits: dict, out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    widths = [r["width"] for r in rows]
    for ax, key, label in zip(
        axes, ("fvu", "dead"), ("held-out FVU", "dead fraction"), strict=True
    ):
        ax.loglog(widths, [r[key] for r in rows], "o", label="measured")
        a, b, r2 = fits[key]
        ax.loglog(widths, [a * w**b for w in widths], "-", label=f"{a:.3g} w^{b:.3f}, R²={r2:.3f}")
        ax.set_xlabel("width (latents)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "width-scaling.png", dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--acts", required=True)
    p.add_argument("--run", required=True, help="the sweep's run directory (trained if absent)")
    p.add_argument("--quickstart", help="also score this SAE")
    p.add_argument(
        "--widths",
        type=lambda s: [int(w) for w in s.split(",")],
        default=[1024, 2048, 4096, 8192, 16384],
    )
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--words", type=int, default=4000, help="first-letter words")
    p.add_argument("--documents", type=int, default=100, help="documents per source")
    p.add_argument("--out", default="docs")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_s = train(args)
    summary = json.loads((Path(args.run) / "summary.json").read_text())
    saes = {}
    rows = []
    for name, info in sorted(
        summary.items(), key=lambda kv: load_sae(Path(args.run) / kv[0]).cfg.d_sae
    ):
        sae = load_sae(Path(args.run) / name)
        saes[name] = sae
        rows.append(
            {
                "name": name,
                "width": sae.cfg.d_sae,
                "fvu": info["heldout"]["fvu"],
                "dead": info["heldout"]["dead_fraction"],
                "dead_train": info["dead_fraction_train"],
                "tokens": info["train_tokens"],
                "heldout_tokens": info["heldout"]["tokens"],
            }
        )
    fits = {
        key: power_law([r["width"] for r in rows], [r[key] for r in rows])
        for key in ("fvu", "dead")
    }
    plot(rows, fits, out)
    if args.quickstart:
        saes[f"quickstart {Path(args.quickstart).name}"] = load_sae(args.quickstart)
    start = time.time()
    site = next(iter(saes.values())).cfg.metadata.site
    model = load_model(args.model)
    letters = letter_data(model, site, max_words=args.words)
    tasks = corpus_tasks(model, site, documents=args.documents)
    probe = letter_probe(letters)
    probes = {
        name: (absorption(sae, letters, probe), sparse_probing(sae, tasks))
        for name, sae in saes.items()
    }
    probe_s = time.time() - start
    (out / "absorption-probing.json").write_text(
        json.dumps({"rows": rows, "fits": fits, "probes": probes}, indent=1)
    )
    write_page(args, rows, fits, probes, letters, tasks, out, train_s, probe_s)


def write_page(
    args, rows, fits, probes, letters, tasks, out: Path, train_s: float, probe_s: float
) -> None:
    r0 = rows[0]
    lines = [
        "# Width scaling, feature absorption and k-sparse probing",
        "",
        "Generated by `examples/width_sweep.py`; every number below comes from that run.",
        "",
        f"    python examples/width_sweep.py --acts {args.acts} --run {args.run} "
        f"--quickstart {args.quickstart} --out {args.out}",
        "",
        f"Model {args.model}, site `{load_sae(Path(args.run) / r0['name']).cfg.metadata.site}`; "
        f"TopK k {args.k}, widths "
        f"{', '.join(str(r['width']) for r in rows)} trained from one pass over the cache "
        f"({r0['tokens']:,} tokens each, every other setting the default); held-out rows: "
        f"{r0['heldout_tokens']:,}. Machine: {platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, shared with other jobs (times are wall-clock under "
        f"load): training {train_s:,.0f} s (0: reused), absorption and probing {probe_s:,.0f} s.",
        "",
        "## FVU and dead latents against width",
        "",
        "| width | held-out FVU | dead (held-out) | dead (train window) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['width']} | {r['fvu']:.4f} | {r['dead']:.1%} | {r['dead_train']:.1%} |" for r in rows
    ]
    for key, label in (("fvu", "FVU"), ("dead", "dead fraction (held-out)")):
        a, b, r2 = fits[key]
        lines.append(f"\n{label} ≈ {a:.3g} · width^{b:.3f} (log-log least squares, R² = {r2:.3f}).")
    lines += ["", "![FVU and dead fraction against width](width-scaling.png)", ""]
    n_quote = int(tasks[1].labels.sum())
    lines += [
        "## Feature absorption (first letter) and 5-sparse probing",
        "",
        f"Absorption (Chanin et al. 2024; definition in `saescope.evaluate.absorption`): "
        f"{len(letters.words):,} single-token words of the tokenizer, each after the spelling "
        f"prompt; a 26-way logistic probe on the raw activations, each letter's SAE latent by "
        f"k-sparse probing (k = 1), rates averaged over letters with 20+ words. "
        f"Probing: `source` = Wikipedia summary vs Gutenberg passage ({len(tasks[0].labels)} "
        f"documents, mean-pooled), `quote` = Gutenberg token inside double quotes "
        f"({len(tasks[1].labels):,} tokens, {n_quote:,} inside); 30% held out.",
        "",
        "| SAE | letter probe acc | letters | absorption rate | false-negative rate "
        "| source raw | source k=1 | source k=5 | quote raw | quote k=1 | quote k=5 | quote k=20 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (ab, pr) in probes.items():
        s, q = pr["source"], pr["quote"]
        lines.append(
            f"| {name} | {ab['probe_accuracy']:.3f} | {ab['letters']} | {ab['absorption_rate']:.3f} "
            f"| {ab['false_negative_rate']:.3f} | {s['raw']:.3f} | {s['sparse']['1']:.3f} "
            f"| {s['sparse']['5']:.3f} | {q['raw']:.3f} | {q['sparse']['1']:.3f} "
            f"| {q['sparse']['5']:.3f} | {q['sparse']['20']:.3f} |"
        )
    lines.append("")
    (out / "absorption-probing.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
