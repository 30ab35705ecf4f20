"""Finding concept features on the quickstart SAE, written to docs/concept-search.md.

    python examples/concept_search.py [--out saescope-out] [--docs docs]

For five concepts that are not the sea or music (cooking, war, money, illness, weather): what
word search (``saescope search --index I WORD``) and example search (``saescope search --index I
--sae S --text ... --contrast ...``) return, and for the best example-search hit of each (the
first non-dense one), the share of sampled rollouts from neutral prompts that use the concept's
words when it is clamped at every token, against unsteered, with the same seeds. Concepts that
fail are reported as such. Reads the quickstart's SAE and index under OUT.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import platform
import time
from pathlib import Path

import torch

from saescope.data import ContextConfig, load_corpus, pack_contexts
from saescope.interpret.find import search_by_example
from saescope.interpret.query import FeatureIndex
from saescope.models import load_model
from saescope.sae import load_sae
from saescope.steer import FeatureIntervention, GenerationConfig, clamp, steering_curve

SAE = "saes/topk-w8192-k32"
CONCEPTS = {
    "cooking": (
        "cook",
        [
            "She cooked the pasta in the kitchen",
            "He baked bread and roasted the chicken in the oven",
            "Stir the soup and add salt before serving dinner",
        ],
        ["cook", "cooking", "cooked", "kitchen", "food", "recipe", "bake", "baked", "oven",
         "dinner", "soup", "meal", "chef", "eat", "pasta", "sauce", "dish"],
    ),
    "war": (
        "war",
        [
            "The army invaded and the war lasted four years",
            "Soldiers fought in the trenches during the battle",
            "The troops attacked the enemy fortress",
        ],
        ["war", "army", "soldier", "battle", "troops", "military", "enemy", "fight", "fought",
         "weapon", "attack", "invasion", "killed"],
    ),
    "money": (
        "money",
        [
            "She paid for the car with cash from her savings",
            "The bank lent him money at a high interest rate",
            "Prices rose and the dollar lost value",
        ],
        ["money", "cash", "bank", "dollar", "price", "pay", "paid", "cost", "rich", "wealth",
         "coin", "pound", "salary", "buy", "bought", "debt"],
    ),
    "illness": (
        "illness",
        [
            "He caught a fever and stayed in bed with the flu",
            "The patient was diagnosed with cancer",
            "The doctor treated her infection with antibiotics",
        ],
        ["ill", "illness", "sick", "disease", "fever", "doctor", "patient", "hospital",
         "cancer", "infection", "flu", "medicine", "pain", "symptom"],
    ),
    "weather": (
        "weather",
        [
            "It rained all day and the wind was cold",
            "A storm brought snow and freezing temperatures",
            "The sun came out and the sky was clear and warm",
        ],
        ["weather", "rain", "rained", "wind", "storm", "snow", "sun", "sunny", "cloud", "sky",
         "cold", "warm", "temperature", "freezing", "ice"],
    ),
}  # fmt: skip
CONTRAST = [
    "He walked to the office and read the report",
    "The meeting started at nine and ended at noon",
]
PROMPTS = ["My favourite thing about the weekend is", "I think that my neighbour"]
ROLLOUTS = GenerationConfig(max_new_tokens=24, samples=6, sample=True, seed=0)
MULTIPLES = [0.0, 0.6, 1.2]
"""Clamps as multiples of the feature's largest activation in the index (the quickstart's 0.6,
and twice that)."""
LOSS_CONTEXTS = 8


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", "⏎")


def steer(model, sae, index, feature: int, vocabulary, batches, n: int) -> tuple[list, str]:
    """The steering curve of ``feature`` clamped at MULTIPLES of its max, and its table."""
    peak = index.feature(feature).max_activation

    def make(c: float) -> list:
        return [FeatureIntervention(sae, (clamp(feature, c * peak),))] if c else []

    points = steering_curve(model, make, MULTIPLES, PROMPTS, vocabulary, batches, ROLLOUTS)
    rows = [
        [
            f"{p.coefficient:g}x ({p.coefficient * peak:.1f})",
            f"{round(p.success * n)}/{n}",
            f"{p.loss:.3f}",
            cell(p.texts[0][:100]),
        ]
        for p in points
    ]
    text = (
        f"feature {feature} (largest activation {peak:.2f}) clamped at every token from "
        f"{PROMPTS}; rollouts of {n} using a word of {vocabulary[:6]}... (the same seeds in "
        f"every row), loss on {LOSS_CONTEXTS} corpus contexts:\n\n"
        + table(["clamp", "on topic", "loss", "first rollout"], rows)
    )
    return points, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("saescope-out"))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    model = load_model()
    sae = load_sae(args.out / SAE)
    cfg = ContextConfig(context_size=64, seed=2026)
    ids = list(itertools.islice(pack_contexts(load_corpus(), model.tokenizer, cfg), LOSS_CONTEXTS))
    batches = list(torch.stack(ids).split(4))
    n = len(PROMPTS) * ROLLOUTS.samples
    parts, summary = [], []
    with FeatureIndex(args.out / "index.db") as index:
        for concept, (word, texts, vocabulary) in CONCEPTS.items():
            words = index.search(word, 3)
            examples = search_by_example(model, sae, index, texts, CONTRAST, limit=3)
            described = index.describe([h.feature for h in words + examples])  # type: ignore[operator]
            lines = [f"## {concept}\n", f"`saescope search --index ... {word}`:\n"]
            lines.append(
                table(
                    ["feature", "match", "share", "density", "description"],
                    [
                        [
                            str(h.feature),
                            h.reason + ("" if h.whole else " (part)"),
                            f"{h.score:.2f}",
                            f"{h.density:.3%}",
                            cell(described[h.feature]),
                        ]
                        for h in words
                    ],
                )
                if words
                else "no feature matches.\n"
            )
            quoted = " ".join(f"--text {t!r}" for t in texts)
            lines.append(f"\n`saescope search --index ... --sae ... {quoted} --contrast ...`:\n")
            lines.append(
                table(
                    ["feature", "score", "texts", "density", "fires on", "description"],
                    [
                        [
                            str(h.feature),
                            f"{h.score:.1f}",
                            f"{h.texts}/{len(texts)}",
                            f"{h.density:.3%}",
                            cell(", ".join(f"{t!r} {v:.2f}" for t, v in h.tokens)),
                            cell(described[h.feature]),
                        ]
                        for h in examples
                    ],
                )
                if examples
                else "no feature fires specifically.\n"
            )
            chosen = {
                "word": next((h.feature for h in words if not h.dense), None),
                "example": next((h.feature for h in examples if not h.dense), None),
            }
            for how, feature in chosen.items():
                if feature is None:
                    lines.append(f"\nNo non-dense {how}-search hit to steer with.\n")
                    summary.append([concept, how, "–", *("–" for _ in MULTIPLES)])
                    continue
                points, text = steer(model, sae, index, feature, vocabulary, batches, n)
                lines.append(f"\nThe {how}-search hit: {text}")
                counts = [f"{round(p.success * n)}/{n}" for p in points]
                summary.append([concept, how, str(feature), *counts])
            parts.append("\n".join(lines))
    seconds = time.perf_counter() - start
    head = (
        "# Finding concept features: word search, example search, and steering\n\n"
        f"Written by `python examples/concept_search.py` ({time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads, {seconds:.0f} s) from the "
        f"quickstart's SAE (`{SAE}`, layers.6.resid_post of Gemma 3 270M) and index; nothing "
        "here is typed by hand. Example search uses each concept's three texts against two "
        f"neutral contrast texts ({CONTRAST}).\n\n"
        "Summary: rollouts on topic with the first non-dense hit of each search clamped at "
        "every token, against unsteered (0x; the same seeds in every column):\n\n"
        + table(["concept", "search", "feature", *(f"{m:g}x max" for m in MULTIPLES)], summary)
        + "\n"
    )
    (args.docs / "concept-search.md").write_text(head + "\n".join(parts))
    logging.info("wrote %s", args.docs / "concept-search.md")


if __name__ == "__main__":
    main()
