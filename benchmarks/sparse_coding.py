"""Gradient pursuit vs sklearn's OMP vs the SAE encoder: tokens/s and FVU at L0 32, one run.

    PYTHONPATH=src python benchmarks/sparse_coding.py [--rows 1024] [--omp-rows 32] [--device cpu]

Dictionaries: 8192 x 640, the quickstart's TopK SAE (k=32) on its own held-out Gemma 3 270M
layer 6 activations (a random one of that shape if --sae is missing); 16384 x 2304, a random
TopK SAE (k=32) on signals that are 32-sparse combinations of its atoms plus noise (the width of
Gemma 2 2B, no trained SAE of that shape here). sklearn codes --omp-rows rows (it loops over
rows in Python and is slow); everything is timed on the same rows. Records the load average: the
machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _record import append, environment

from saescope.coding import gradient_pursuit, orthogonal_matching_pursuit
from saescope.sae import SAEConfig, build_sae, load_sae

QS_SAE = "/work/runs/qs6/saes/topk-w8192-k32"
QS_ACTS = "/work/runs/qs6/activations"


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def case(name: str, sae, x: torch.Tensor, k: int, omp_rows: int, device: str) -> dict:
    sae = sae.to(device)
    x = x.to(device)
    result: dict = {"dictionary": name, "rows": len(x), "k": k}
    lat, t = timed(sae.encode, x)
    result["encoder"] = {"tokens_per_s": len(x) / t, "fvu": fvu(x, sae.decode(lat)), "l0": k}
    for label, select in (("gp", None), ("gp_bf16_select", torch.bfloat16)):
        if select is not None and device == "cpu":
            continue
        lat, t = timed(gradient_pursuit, x - sae.b_dec, sae.W_dec, k, True, select)
        l0 = float(lat.l0().mean())
        result[label] = {"tokens_per_s": len(x) / t, "fvu": fvu(x, sae.decode(lat)), "l0": l0}
    lat, t = timed(orthogonal_matching_pursuit, x - sae.b_dec, sae.W_dec, k, False)
    result["omp_torch"] = {"tokens_per_s": len(x) / t, "fvu": fvu(x, sae.decode(lat))}
    from sklearn.linear_model import orthogonal_mp

    few = (x[:omp_rows] - sae.b_dec).double().cpu().numpy()
    D = sae.W_dec.double().cpu().numpy()
    start = time.perf_counter()
    coef = orthogonal_mp(D.T, few.T, n_nonzero_coefs=k)  # (n, rows)
    t = time.perf_counter() - start
    x_hat = torch.from_numpy(coef.T @ D).float().to(device) + sae.b_dec
    sub = x[:omp_rows]
    result["sklearn_omp"] = {"tokens_per_s": omp_rows / t, "fvu": fvu(sub, x_hat), "rows": omp_rows}
    gp_sub = gradient_pursuit(sub - sae.b_dec, sae.W_dec, k)
    result["gp_fvu_on_sklearn_rows"] = fvu(sub, sae.decode(gp_sub))
    result["gp_speedup_vs_sklearn"] = (
        result["gp"]["tokens_per_s"] / result["sklearn_omp"]["tokens_per_s"]
    )
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}


@torch.inference_mode()
def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--omp-rows", type=int, default=32)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sae", default=QS_SAE)
    p.add_argument("--acts", default=QS_ACTS)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    records = []
    if os.path.isdir(args.sae) and os.path.isdir(args.acts):
        from saescope.activations import open_activations

        sae = load_sae(args.sae)
        cache = open_activations(args.acts)
        held = cache.split(args.rows)[1]
        x = torch.cat([b for b in cache.batches(4096, shuffle=False, shards=held) if len(b)])
        name = "8192x640 (quickstart SAE, real activations)"
    else:
        sae = build_sae(SAEConfig(d_in=640, d_sae=8192, architecture="topk", k=32), seed=0)
        x = (torch.rand(args.rows, 8192, generator=g) < 32 / 8192).float() @ sae.W_dec.detach()
        name = "8192x640 (random)"
    records.append(case(name, sae.eval(), x[: args.rows].float(), 32, args.omp_rows, args.device))
    big = build_sae(SAEConfig(d_in=2304, d_sae=16384, architecture="topk", k=32), seed=1).eval()
    z = torch.zeros(args.rows, 16384)
    z.scatter_(
        1,
        torch.randint(0, 16384, (args.rows, 32), generator=g),
        torch.rand(args.rows, 32, generator=g),
    )
    x = z @ big.W_dec.detach() + 0.05 * torch.randn(args.rows, 2304, generator=g)
    records.append(
        case("16384x2304 (random, synthetic 32-sparse)", big, x, 32, args.omp_rows, args.device)
    )
    env = environment() | {"loadavg": os.getloadavg(), "device": args.device}
    append("sparse_coding", *[env | r for r in records], indent=1)


if __name__ == "__main__":
    main()
