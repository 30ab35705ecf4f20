"""Throughput of the local chat backend (the default explainer) at several batch sizes.

The same conversations, shaped like an explainer prompt (a system turn, then a feature's
tokens with activations 0-10, tab-separated), are answered greedily at each ``--batch`` size;
reported: conversations per minute, prompt and generated tokens per second, and the load average
of the (shared) machine before and after, since on a shared CPU the seconds mean little without it.
Appends one JSON line per batch size to benchmarks/results/llm_backends.jsonl.

    python benchmarks/llm_backends.py [--conversations 8] [--batches 1,4,8] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import os
import random
import time

from _record import append, environment

from saescope.interpret.llm import ChatMessage, Sampling
from saescope.interpret.llm.local import LocalBackend, load_chat_model

WORDS = [
    "the",
    "ocean",
    "waves",
    "river",
    "sea",
    "water",
    "blue",
    "ship",
    "sail",
    "harbor",
    "tide",
    "storm",
    "coast",
    "beach",
    "salt",
]


def conversation(seed: int, lines: int) -> list[ChatMessage]:
    """An explainer-shaped prompt: ``lines`` token/activation pairs from a seeded generator."""
    rng = random.Random(seed)
    body = "\n".join(f"{rng.choice(WORDS)}\t{rng.randint(0, 10)}" for _ in range(lines))
    return [
        {"role": "system", "content": "You find the pattern in where a text feature fires."},
        {
            "role": "user",
            "content": "Tokens and the feature's activation (0-10):\n"
            f"{body}\nIn one short phrase, what do the high-activation tokens share?",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--lines", type=int, default=40, help="token lines per prompt")
    args = parser.parse_args()

    start = time.perf_counter()
    load_chat_model(dtype="fp32")
    load_s = time.perf_counter() - start
    conversations = [conversation(i, args.lines) for i in range(args.conversations)]
    sampling = Sampling(max_tokens=args.max_tokens)
    LocalBackend(batch_size=1).chat(conversations[0], Sampling(max_tokens=2))  # warm-up
    for batch in (int(b) for b in args.batches.split(",")):
        backend = LocalBackend(batch_size=batch)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        replies = backend.chat_many(conversations, sampling)
        seconds = time.perf_counter() - start
        usage = backend.usage
        append(
            "llm_backends",
            environment()
            | {
                "backend": "local",
                "model": backend.name,
                "dtype": "fp32",
                "batch": batch,
                "conversations": len(conversations),
                "max_tokens": args.max_tokens,
                "load_s": round(load_s, 2),
                "seconds": round(seconds, 2),
                "conversations_per_min": round(60 * len(conversations) / seconds, 2),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "prompt_tokens_per_s": round(usage.prompt_tokens / seconds, 1),
                "completion_tokens_per_s": round(usage.completion_tokens / seconds, 2),
                "load_average_before": round(load_before, 2),
                "load_average_after": round(os.getloadavg()[0], 2),
                "first_answer": replies[0].text,
            },
        )


if __name__ == "__main__":
    main()
