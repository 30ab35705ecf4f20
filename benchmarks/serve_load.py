"""Load on `saescope serve`: many concurrent feature pages, concurrent steering requests, and
one steering request alone against the bare library call doing the same work.

The server runs as its own process (`saescope serve` on a finished quickstart, default
/work/runs/qs: index.db and saes/topk-w8192-k32, the default model), so the client's work does
not share its interpreter. Measured:

- ``pages`` feature pages (random features) sent at once: errors, p50 / p95 / max latency;
- ``steers`` steering requests (clamp one feature, greedy, ``new_tokens``) sent at once:
  errors, p50 / p95 latency (they queue: the last waits for all the others);
- one steering request alone (median of ``repeats``) against ``steer.compare`` in this process,
  the bare library work behind it (clean and steered next-token distribution and rollouts).

    python benchmarks/serve_load.py [--run DIR] [--pages 200] [--steers 20] [--new-tokens 20]

Appends to results/serve_load.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _record import append, environment

SRC = Path(__file__).resolve().parents[1] / "src"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float], errors: int) -> dict[str, float | int]:
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "p50_ms": round(1000 * percentile(latencies, 0.5), 1) if latencies else None,
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1) if latencies else None,
        "max_ms": round(1000 * max(latencies), 1) if latencies else None,
    }


async def burst(base: str, requests: list[tuple[str, dict | None]]) -> tuple[list[float], int]:
    """Send every request at once; (latencies of the 200s, count of anything else)."""
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=base, timeout=3600, limits=limits) as client:

        async def one(url: str, body: dict | None) -> float | None:
            start = time.perf_counter()
            r = await (client.post(url, json=body) if body else client.get(url))
            return time.perf_counter() - start if r.status_code == 200 else None

        results = await asyncio.gather(*(one(u, b) for u, b in requests), return_exceptions=True)
    ok = [r for r in results if isinstance(r, float)]
    return ok, len(results) - len(ok)


def start_server(run: Path, port: int, new_tokens: int, queue: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "saescope", "serve", "--index", f"qs={run / 'index.db'}",
            "--sae", str(run / "saes" / "topk-w8192-k32"), "--port", str(port),
            "--max-new-tokens", str(new_tokens), "--max-queue", str(queue)]  # fmt: skip
    proc = subprocess.Popen(argv, env=os.environ | {"PYTHONPATH": str(SRC)})
    while True:
        if proc.poll() is not None:
            raise SystemExit("the server exited before serving")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/i/qs", timeout=60).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="/work/runs/qs")
    p.add_argument("--pages", type=int, default=200)
    p.add_argument("--steers", type=int, default=20)
    p.add_argument("--new-tokens", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--features", type=int, default=8192, help="features of the index")
    p.add_argument("--prompt", default="I went to the")
    args = p.parse_args()
    run = Path(args.run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    proc = start_server(run, port, args.new_tokens, max(8, args.steers + 1))
    try:
        features = httpx.get(f"{base}/i/qs/feature/0.json").json()
        rng = random.Random(0)
        pages = [(f"/i/qs/feature/{rng.randrange(args.features)}", None) for _ in range(args.pages)]
        page_lat, page_err = asyncio.run(burst(base, pages))
        feature = int(features["feature"])
        edit = f"clamp {feature}=100"
        body = {"prompt": args.prompt, "edits": edit, "max_new_tokens": args.new_tokens}
        steers = [("/api/i/qs/steer", body)] * args.steers
        steer_lat, steer_err = asyncio.run(burst(base, steers))
        alone = [asyncio.run(burst(base, steers[:1]))[0][0] for _ in range(args.repeats)]
    finally:
        proc.terminate()
        proc.wait(30)
    bare = bare_compare(run, args.prompt, feature, args.new_tokens, args.repeats)
    append(
        "serve_load",
        environment()
        | {
            "run": str(run),
            "feature_pages": summary(page_lat, page_err),
            "steering_concurrent": summary(steer_lat, steer_err),
            "new_tokens": args.new_tokens,
            "steer_alone_s": round(statistics.median(alone), 3),
            "bare_compare_s": round(bare, 3),
            "alone_over_bare": round(statistics.median(alone) / bare, 3),
        },
        indent=2,
    )


def bare_compare(run: Path, prompt: str, feature: int, new_tokens: int, repeats: int) -> float:
    """Median seconds of ``steer.compare`` (what one steering request runs), in this process."""
    sys.path.insert(0, str(SRC))
    from saescope.models import load_model
    from saescope.sae import load_sae
    from saescope.steer import FeatureIntervention, GenerationConfig, clamp, compare

    model = load_model("gemma-3-270m")
    sae = load_sae(run / "saes" / "topk-w8192-k32", device=model.device)
    edits = [FeatureIntervention(sae, (clamp(feature, 100.0),))]
    config = GenerationConfig(max_new_tokens=new_tokens)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compare(model, prompt, edits, config)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
