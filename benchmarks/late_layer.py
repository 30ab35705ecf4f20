"""Where the logit lens shows the default model deciding: the layer for the late-layer SAE.

For each prompt, the residual stream at the last position after every layer (``resid_post``)
is read through the model's own head (``saescope.interpret.lens.logit_lens``), in float32 so
that ranks have no ties from bf16 logits. Per layer: the 1-based rank, under the lens, of the
token the full model ranks first, and KL(final || lens) in nats. Prints a markdown table of the
medians over the prompts and of each prompt's rank, and appends a JSON record to
benchmarks/results/late_layer.jsonl.

    python benchmarks/late_layer.py
"""

from __future__ import annotations

import statistics

import torch
from _record import append, environment
from torch import Tensor

from saescope.interpret.lens import logit_lens, unembed
from saescope.models import DEFAULT_MODEL, load_model, run_with_cache

PROMPTS = [
    "The reliability of Wikipedia is very",
    "The capital of France is",
    "Sherlock Holmes looked at Watson and said",
    "The Eiffel Tower is located in the city of",
    "2, 4, 6, 8,",
    "She opened the door and saw a",
    "Water boils at a temperature of 100 degrees",
    "In 1492, Columbus sailed across the Atlantic",
]
TRACKED = [" important", " questionable", " high", " low"]
"""On the first prompt: where the tokens of the doubt demo (issue #13) rise and fall."""


@torch.inference_mode()
def lens_logprobs(model, prompt: str) -> Tensor:
    """(n_layers, vocab) float32 log-probabilities of the next token read off ``resid_post`` at
    the last position: the ``layers.i.mlp`` stages of ``logit_lens``, kept as logits. Ranks
    from its probabilities would tie where float32 softmax underflows to 0 (early layers)."""
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    sites = [f"layers.{i}.resid_post" for i in range(model.n_layers)]
    acts = run_with_cache(model, ids, sites)
    resid = torch.stack([acts[s][0, -1] for s in sites])  # (n_layers, d)
    return unembed(model, resid).log_softmax(-1)


def layer_rows(model, prompt: str) -> tuple[str, list[int], list[float]]:
    """The final top-1 token, then per layer its 1-based lens rank and KL(final || lens)."""
    logp = lens_logprobs(model, prompt)  # (n_layers, vocab)
    final = logp[-1]
    target = int(final.argmax())
    ranks = (1 + (logp > logp[:, target : target + 1]).sum(-1)).tolist()
    kl = (final.exp() * (final - logp)).sum(-1).tolist()
    return model.tokenizer.decode([target]), ranks, kl


def tracked_ranks(model, prompt: str, tokens: list[str]) -> dict[str, list[int]]:
    """Per token (each one token id), its 1-based lens rank after every layer."""
    ids = []
    for t in tokens:
        [i] = model.tokenizer(t, add_special_tokens=False)["input_ids"]
        ids.append(i)
    logp = lens_logprobs(model, prompt)
    ranks = 1 + (logp.unsqueeze(1) > logp[:, ids].unsqueeze(-1)).sum(-1)  # (n_layers, n)
    return {t: ranks[:, j].tolist() for j, t in enumerate(tokens)}


def check_against_lens(model, prompt: str) -> None:
    """The same numbers as ``logit_lens``'s resid_post stages (its probabilities)."""
    lens = logit_lens(model, prompt)
    after = [i for i, s in enumerate(lens.stages) if s.endswith(".mlp")]
    assert torch.allclose(lens.probs[after], lens_logprobs(model, prompt).exp(), atol=1e-6)


def main() -> None:
    model = load_model(DEFAULT_MODEL, dtype="fp32", device="cpu")
    check_against_lens(model, PROMPTS[0])
    rows = {p: layer_rows(model, p) for p in PROMPTS}
    n = model.n_layers
    median_rank = [statistics.median(r[1][i] for r in rows.values()) for i in range(n)]
    median_kl = [statistics.median(r[2][i] for r in rows.values()) for i in range(n)]
    print("| layer | median rank | median KL (nats) | " + " | ".join(
        f"{p[:24]!r} -> {t!r}" for p, (t, _, _) in rows.items()) + " |")  # fmt: skip
    print("|---" * (3 + len(rows)) + "|")
    for i in range(n):
        ranks = " | ".join(f"{r[1][i]:,}" for r in rows.values())
        print(f"| {i} | {median_rank[i]:,.1f} | {median_kl[i]:.2f} | {ranks} |")
    tracked = tracked_ranks(model, PROMPTS[0], TRACKED)
    print(f"\n{PROMPTS[0]!r}: lens rank per layer")
    print("| layer | " + " | ".join(repr(t) for t in TRACKED) + " |")
    print("|---" * (1 + len(TRACKED)) + "|")
    for i in range(n):
        print(f"| {i} | " + " | ".join(f"{tracked[t][i]:,}" for t in TRACKED) + " |")
    append(
        "late_layer",
        {
            **environment(),
            "model": DEFAULT_MODEL,
            "dtype": "float32",
            "prompts": {p: {"final_top1": t, "rank": r, "kl": k} for p, (t, r, k) in rows.items()},
            "median_rank": median_rank,
            "median_kl": median_kl,
            "tracked": {"prompt": PROMPTS[0], "rank": tracked},
        },
    )


if __name__ == "__main__":
    main()
