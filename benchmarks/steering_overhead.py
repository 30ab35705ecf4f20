"""Generation speed with one clamped SAE feature against plain generation, on the default model.

Three ways of generating the same tokens (KV cache on, sampling with a fixed seed, exactly
``--new`` tokens per row), interleaved and repeated; the best run of each is kept (on a shared machine the minimum time
is the least disturbed by other processes; the median is recorded too):
  - plain: transformers' ``generate`` on the bare model (with the contiguous-unembedding
    fix that ``generate_with`` applies: without it a bf16 prompt pass on CPU costs ~500x more);
  - tracked: the same inside ``intervene(model, [])`` (the position tracker only);
  - clamped: one SAE feature clamped at every token (encode, edit, decode the delta), error
    term kept, as ``saescope steer --clamp`` does.
Appends a JSON record to benchmarks/results/steering.jsonl.

    python benchmarks/steering_overhead.py [--sae saescope-out/saes/topk-w8192-k32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _record import append, environment

from saescope.models import DEFAULT_MODEL, load_model
from saescope.sae import load_sae
from saescope.steer import FeatureIntervention, clamp, intervene
from saescope.steer.generate import contiguous_unembedding

PROMPT = "The reliability of Wikipedia is very"


@torch.inference_mode()
def tokens_per_second(model, ids: torch.Tensor, new: int, interventions: list | None) -> float:
    torch.manual_seed(0)
    start = time.perf_counter()
    kwargs = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=True,
        top_k=None,
        top_p=None,
        pad_token_id=model.tokenizer.pad_token_id,
    )
    with contiguous_unembedding(model):  # all three: see generate.contiguous_unembedding
        if interventions is None:
            out = model.hf.generate(**kwargs)
        else:
            with intervene(model, interventions):
                out = model.hf.generate(**kwargs)
    seconds = time.perf_counter() - start
    assert out.shape[1] == ids.shape[1] + new
    return ids.shape[0] * new / seconds


@torch.inference_mode()
def _edit_ms(intervention: FeatureIntervention, batch: int, calls: int = 200) -> float:
    """Milliseconds the clamp's own work takes per decoding step (encode, edit, decode the
    delta, casts) on ``batch`` rows: the part of the overhead not drowned in timing noise."""
    x = torch.randn(batch, 640) * 40
    intervention.edited(x)
    start = time.perf_counter()
    for _ in range(calls):
        intervention.edited(x.float()).to(torch.bfloat16)
    return 1000 * (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sae", default="saescope-out/saes/topk-w8192-k32")
    parser.add_argument("--feature", type=int, default=4320)
    parser.add_argument("--value", type=float, default=3.0)
    parser.add_argument("--new", type=int, default=32, help="tokens generated per row")
    parser.add_argument("--batches", default="1,8", help="rows per generate call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="bf16")
    args = parser.parse_args()

    model = load_model(DEFAULT_MODEL, dtype=args.dtype, device="cpu")
    sae = load_sae(args.sae)
    methods = {
        "plain": None,
        "tracked": [],
        "clamped": [FeatureIntervention(sae, (clamp(args.feature, args.value),))],
    }
    prompt = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    for batch in (int(b) for b in args.batches.split(",")):
        ids = prompt.repeat(batch, 1)
        tokens_per_second(model, ids, 4, None)  # warm-up
        runs: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.repeats):  # interleaved: load from other processes hits all alike
            for name, interventions in methods.items():
                runs[name].append(tokens_per_second(model, ids, args.new, interventions))
        tok_s = {name: max(v) for name, v in runs.items()}
        median = {name: statistics.median(v) for name, v in runs.items()}
        edit_ms = _edit_ms(methods["clamped"][0], batch)
        record = {
            **environment(),
            "model": DEFAULT_MODEL,
            "dtype": args.dtype,
            "sae": f"{sae.cfg.architecture} d_sae={sae.cfg.d_sae} k={sae.cfg.k}",
            "batch": batch,
            "new_tokens": args.new,
            "prompt_tokens": prompt.shape[1],
            "repeats": args.repeats,
            **{f"{name}_tok_s": round(v, 1) for name, v in tok_s.items()},
            "clamped_vs_plain": round(tok_s["clamped"] / tok_s["plain"], 3),
            **{f"{name}_median_tok_s": round(v, 1) for name, v in median.items()},
            "clamp_edit_ms_per_step": round(edit_ms, 3),
            "plain_ms_per_step": round(1000 * batch / tok_s["plain"], 1),
            "all_runs": {name: [round(x, 1) for x in v] for name, v in runs.items()},
        }
        append("steering", record)


if __name__ == "__main__":
    main()
