"""saescope's TopK trainer against SAELens, sparsify and dictionary_learning, in one run.

Each tool runs in its own process through ../shared/bench/peer_harness.py on identical batches
(the peers from the venv that ../shared/bench/setup-peers.sh builds, saescope from this one).
Appends one JSON record per tool to results/peers.jsonl and prints a markdown table.

    python benchmarks/peer_comparison.py --d 2304 --n 16384 --k 64 --B 2048 --steps 12
    python benchmarks/peer_comparison.py --acts acts.npy --normalize --n 8192 --k 32 --B 4096
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _record import append, environment

HERE = Path(__file__).resolve().parent
HARNESS = HERE.parent.parent / "shared" / "bench" / "peer_harness.py"
PEERS = {"sparsify": "sparsify", "saelens": "saelens", "dictionary_learning": "dl"}


def run(tool: str, python: str, args: argparse.Namespace, extra: list[str], env: dict) -> dict:
    if tool.startswith("saescope"):
        selector = ["--adapter", f"{HERE / 'peer_adapter.py'}:Adapter"]
    else:
        selector = ["--tool", PEERS[tool]]
    cmd = [
        python,
        str(HARNESS),
        *selector,
        "--d",
        str(args.d),
        "--n",
        str(args.n),
        "--k",
        str(args.k),
        "--B",
        str(args.B),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--mode",
        args.mode,
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        return {"tool": tool, "error": (done.stderr or done.stdout)[-2000:]}
    return {**json.loads(lines[-1]), "tool": tool}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--d", type=int, default=2304)
    p.add_argument("--n", type=int, default=16384)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--B", type=int, default=2048)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--mode", default="harmonized")
    p.add_argument("--acts", help="[T, d] .npy of real activations")
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--peers-python", default=str(HERE.parent / ".peers-venv" / "bin" / "python"))
    p.add_argument("--tools", default="saescope,saescope-bf16,sparsify,saelens,dictionary_learning")
    args = p.parse_args()
    extra = (["--acts", args.acts] if args.acts else []) + (
        ["--normalize"] if args.normalize else []
    )
    records = []
    for tool in args.tools.split(","):
        env = dict(os.environ)
        if tool == "saescope-bf16":
            env["SAESCOPE_ENCODER_DTYPE"] = "bfloat16"
        python = sys.executable if tool.startswith("saescope") else args.peers_python
        record = run(tool, python, args, extra, env)
        record |= {**environment(), "data": Path(args.acts).name if args.acts else "synthetic"}
        records.append(record)
        append("peers", record)
    print(
        "\n| tool | tokens/s | ms/step | peak MiB | held-out FVU | L0 |\n|---|---|---|---|---|---|"
    )
    for r in records:
        if "error" in r:
            print(f"| {r['tool']} | error | | | | |")
        else:
            print(
                f"| {r['tool']} | {r['tokens_per_s']:,.0f} | {r['ms_per_step']} | "
                f"{r['peak_mem_MiB']:,.0f} | {r['eval_fvu']} | {r['eval_L0']} |"
            )


if __name__ == "__main__":
    main()
