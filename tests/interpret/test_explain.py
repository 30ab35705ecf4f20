"""Auto-interp: the explainer prompt, parsing answers, the scoring maths, held-out sets, resume.

The LLM is a small scripted ``ChatBackend`` defined here: it stands in for the model only; the
prompts, parsing, storage, scoring and resume are the product's.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest
from tiny_models import tiny_corpus, tiny_model, tiny_tokenizer

from saescope.data import ContextConfig
from saescope.errors import SaescopeError
from saescope.interpret import store
from saescope.interpret.build import index_features
from saescope.interpret.collect import CollectConfig
from saescope.interpret.explain import (
    ExplainConfig,
    explain_features,
    explain_prompt,
    parse_explanation,
    peaks_explanation,
    quantise,
)
from saescope.interpret.llm import ChatReply
from saescope.interpret.neurons import Example
from saescope.interpret.query import FeatureIndex, FeatureRecord
from saescope.interpret.scoring import (
    ScoreConfig,
    balanced_accuracy,
    classification_score,
    correlation,
    held_out_items,
    parse_simulation,
    parse_yes_no,
    score_explanations,
    simulation_score,
)
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"
CFG = CollectConfig(
    top=5, samples=4, zeros=2, before=4, after=2, zero_pool=16, heldout=8, heldout_zeros=6,
    heldout_pool=64,
)  # fmt: skip


class Scripted:
    """A chat model that answers by a rule of the last message; counts its calls and can die
    (``KeyboardInterrupt``) at its ``die_at``-th ``chat_many`` call, like a killed run."""

    def __init__(self, answer, name="scripted", die_at=None):
        self.answer, self._name, self.die_at = answer, name, die_at
        self.calls = self.batches = 0

    @property
    def name(self):
        return self._name

    def chat(self, messages, sampling=None):
        self.calls += 1
        text = self.answer(messages[-1]["content"])
        return ChatReply(text, len(messages[-1]["content"]) // 4, len(text) // 4)

    def chat_many(self, conversations, sampling=None):
        self.batches += 1
        if self.die_at is not None and self.batches == self.die_at:
            raise KeyboardInterrupt
        return [self.chat(c, sampling) for c in conversations]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain")
    model = tiny_model("llama", tiny_tokenizer())
    cfg = SAEConfig(
        d_in=64, d_sae=24, architecture="topk", k=4,
        metadata=SAEMetadata(hook_name=SITE, model_name=model.name),
    )  # fmt: skip
    save_sae(build_sae(cfg, seed=3), tmp / "sae")
    index = index_features(
        tmp / "index.db", sae_dir=tmp / "sae", model=model, corpus=tiny_corpus(),
        context=ContextConfig(context_size=32), tokens=3_000, collect=CFG, progress=False,
    )  # fmt: skip
    neurons = index_features(
        tmp / "neurons.db", site="layers.1.mlp_act", model=model, corpus=tiny_corpus(),
        context=ContextConfig(context_size=32), tokens=1_500, collect=CFG, progress=False,
    )  # fmt: skip
    return index, neurons


@pytest.fixture
def index_path(built, tmp_path):
    shutil.copy(built[0], tmp_path / "index.db")
    return tmp_path / "index.db"


def _example(words, acts, context):
    return Example(max(acts), context, 0, words, acts, acts.index(max(acts)))


RECORD = FeatureRecord(
    feature=7, fires=3, density=0.01, mean_activation=2.0, max_activation=4.0,
    histogram=np.zeros(4), peaks=[(" sea", 2)],
    top=[_example(["The", " sea", "\n"], [0.0, 4.0, 0.5], 1),
         _example([" a", " sea", " of"], [0.0, 2.0, 0.0], 2)],
    samples=[(0, _example([" deep", "\twater"], [1.0, 0.2], 3)),
             (3, _example([" sea", " air"], [3.0, 0.0], 4))],
    zeros=[], promoted=[(" breeze", 1.0), (" salt", 0.5)], suppressed=[], neighbours=[],
    neurons=[],
)  # fmt: skip

GOLDEN = """Excerpt 1:
The\t0
 sea\t10
\\n\t1

Excerpt 2:
 a\t0
 sea\t5
 of\t0

Excerpt 3:
 sea\t8
 air\t0

Excerpt 4:
 deep\t2
\\twater\t0

Tokens that often come right after the pattern: ' breeze', ' salt'.

What is the pattern? Answer with one line starting with "Pattern:"."""


def test_the_explainer_prompt_of_a_fixed_feature_is_the_golden_text() -> None:
    messages = explain_prompt(RECORD, ExplainConfig(top=2, samples=2, hint=True))
    assert messages[-1] == {"role": "user", "content": GOLDEN}
    assert messages[0]["role"] == "system" and "pattern" in messages[0]["content"]
    # three worked examples of different kinds of feature, each a user turn and its answer
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert answers == [
        "Pattern: the words ocean and sea",
        "Pattern: ingredients and steps of cooking recipes",
        "Pattern: the first token inside parentheses",
    ]
    assert "Excerpt 1:\nThe\t0\n ship\t0" in messages[1]["content"]
    no_hint = explain_prompt(RECORD, ExplainConfig(top=2, samples=2))[-1]["content"]
    assert "breeze" not in no_hint


def test_quantising_activations() -> None:
    assert quantise([0.0, 0.04, 0.05, 1.0, 2.0, 3.0], 2.0) == [0, 0, 0, 5, 10, 10]
    assert quantise([1.0], 0.0) == [0]


@pytest.mark.parametrize(
    ("answer", "parsed"),
    [
        ("Pattern: the word sea.", "the word sea"),
        ('Sure! Here it is.\n\n**Pattern:** "words about the sea"\n', "words about the sea"),
        ("explanation: closing brackets", "closing brackets"),
        ("the word sea", "the word sea"),  # a one-line answer without the marker
        ("", None),
        ("Pattern:   ", None),
        ("I think\nit is about\nthe sea", None),  # several lines, no marker
        ("Pattern: " + "word " * 41, None),  # rambling
    ],
)
def test_parsing_explanations(answer, parsed) -> None:
    assert parse_explanation(answer) == parsed


@pytest.mark.parametrize(
    ("answer", "parsed"),
    [("Yes", True), ("no.", False), (" YES, it is", True), ("The answer is no", False),
     ("Well, yes and no", None), ("maybe", None), ("", None)],
)  # fmt: skip
def test_parsing_yes_no(answer, parsed) -> None:
    assert parse_yes_no(answer) is parsed


def test_parsing_simulations() -> None:
    assert parse_simulation("The\t0\n sea\t10\n\nof\t3", 3) == [0.0, 10.0, 3.0]
    assert parse_simulation("The\t0\n sea\t10", 3) is None  # a token missing
    assert parse_simulation("The\t0\n sea\t11\nof\t2", 3) is None  # out of range
    assert parse_simulation("The\t0\n sea\thigh\nof\t2", 3) is None


def test_balanced_accuracy_of_perfect_inverted_and_constant_predictors() -> None:
    truth = [True] * 9 + [False]  # class imbalance 9:1
    assert balanced_accuracy(truth, truth) == 1.0
    assert balanced_accuracy(truth, [not t for t in truth]) == 0.0
    always_yes = [True] * 10
    assert np.mean(np.equal(truth, always_yes)) == 0.9  # plain accuracy rewards it
    assert balanced_accuracy(truth, always_yes) == 0.5  # balanced accuracy does not
    assert balanced_accuracy([True, True], [True, False]) is None  # one class: undefined


def test_unparsed_answers_are_counted_not_scored() -> None:
    truth = [True, True, False, False]
    score = classification_score(truth, [True, None, False, None], 200, 0)
    assert (score.score, score.n, score.n_unparsed) == (1.0, 2, 2)
    assert score.ci_low == score.ci_high == 1.0
    nothing = classification_score(truth, [None] * 4, 200, 0)
    assert (nothing.score, nothing.n, nothing.n_unparsed) == (None, 0, 4)


def test_correlation_and_its_interval() -> None:
    truth = [[0.0, 3.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert correlation([0, 1, 2], [0, 2, 4]) == pytest.approx(1.0)
    assert correlation([0, 1, 2], [4, 2, 0]) == pytest.approx(-1.0)
    assert correlation([0, 1, 2], [5, 5, 5]) == 0.0  # a constant prediction says nothing
    assert correlation([1, 1], [0, 1]) is None
    perfect = simulation_score(truth, truth, 200, 0)
    assert perfect.score == pytest.approx(1.0) and perfect.n == 3
    inverted = simulation_score(truth, [[-v for v in t] for t in truth], 200, 0)
    assert inverted.score == pytest.approx(-1.0)
    noisy = simulation_score(truth, [[0, 2, 1], [0, 0, 1], None], 500, 0)
    assert noisy.n_unparsed == 1 and noisy.ci_low <= noisy.score <= noisy.ci_high
    # the bootstrap has its own generator: the same seed, the same interval
    assert simulation_score(truth, [[0, 2, 1], [0, 0, 1], None], 500, 0) == noisy


def test_the_held_out_set_is_never_shown_to_the_explainer(index_path) -> None:
    with FeatureIndex(index_path) as index:
        checked = 0
        for f in range(index.n_features):
            shown = {e.context for e in index.feature(f).top} | {
                e.context for _, e in index.feature(f).samples
            }
            held = [e for _, e in index.examples(f, "heldout")]
            assert not {e.context for e in held} & shown
            assert all(e.activation > 0 for e in held)
            silent = index.examples(f, "near") + index.examples(f, "heldout_zero")
            assert len(silent) <= CFG.heldout_zeros
            assert all(max(e.activations) == 0 for _, e in silent)
            checked += bool(held) and bool(silent)
        assert checked > 0
        near = index.db.execute("SELECT count(*) FROM examples WHERE kind = 'near'").fetchone()
        assert near[0] > 0


def _explainer(content: str) -> str:
    """Names the token of the first excerpt's line valued 10 (the feature's top peak)."""
    excerpts = content.split("Excerpt 1:\n", 1)[1]
    token = next(line.split("\t")[0] for line in excerpts.splitlines() if line.endswith("\t10"))
    return f"Pattern: the token {token.strip()!r}"


def _rows(path):
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT feature, explainer, prompt_version, explanation, answer, source_feature, "
        "prompt_tokens, completion_tokens FROM explanations ORDER BY feature, explainer"
    ).fetchall()
    db.close()
    return rows


def test_a_killed_explain_run_resumes_to_the_uninterrupted_result(index_path, tmp_path) -> None:
    other = tmp_path / "other.db"
    shutil.copy(index_path, other)
    cfg = ExplainConfig(batch=2)
    with FeatureIndex(other) as index:
        features = [f for f in range(index.n_features) if index.feature(f).fires][:7]
        whole = Scripted(_explainer)
        run = explain_features(index, features, whole, cfg)
    assert run.explained == features and whole.calls == 7 and not run.unparsed
    with FeatureIndex(index_path) as index:
        dying = Scripted(_explainer, die_at=3)  # dies asking for the third batch
        with pytest.raises(KeyboardInterrupt):
            explain_features(index, features, dying, cfg)
    assert dying.calls == 4
    with FeatureIndex(index_path) as index:
        resumed = Scripted(_explainer)
        run = explain_features(index, features, resumed, cfg)
    assert resumed.calls == 3  # never pays twice for the four done
    assert run.already == features[:4] and run.explained == features[4:]
    assert _rows(index_path) == _rows(other)
    by = {}
    for f, explainer, _, text, _, source, _, _ in _rows(other):
        by[f, explainer] = (text, source)
    for f in features:  # both baselines beside every explanation
        assert by[f, store.EXPLAINER_PEAKS][0].startswith("the token")
        text, source = by[f, f"{store.EXPLAINER_RANDOM}:scripted"]
        assert source != f and text == by[source, "scripted"][0]


def _scorer(content: str) -> str:
    """Detection and fuzzing: yes when a token named by the pattern occurs in the excerpt
    (fuzzing: among the marked ones); simulation: 10 on it, 0 elsewhere."""
    named = content.split("'")[1] if "'" in content.split("\n")[0] else "\0"
    if "Tokens:\n" in content:
        lines = content.split("Tokens:\n", 1)[1].splitlines()
        return "\n".join(f"{t}\t{10 if t.strip() == named else 0}" for t in lines)
    excerpt = content.split("Excerpt: ", 1)[1]
    if "<<" in excerpt:
        marked = [part.split(">>")[0] for part in excerpt.split("<<")[1:]]
        return "Yes" if any(m.strip() == named for m in marked) else "No"
    return "Yes" if named in excerpt else "No"


def test_scores_are_stored_per_explanation_method_and_scorer(index_path) -> None:
    with FeatureIndex(index_path) as index:
        features = [f for f in range(index.n_features) if index.examples(f, "heldout")][:3]
        explain_features(index, features, Scripted(_explainer))
        run = score_explanations(index, Scripted(_scorer, name="judge"), ScoreConfig(bootstrap=50))
        again = Scripted(_scorer, name="judge")
        assert score_explanations(index, again, ScoreConfig(bootstrap=50)).scored == []
        assert again.calls == 0  # all done: nothing paid twice
        assert len(run.scored) == 3 * 3 * len(features)  # 3 explanations x 3 methods
        record = index.feature(features[0])
        (mine,) = [e for e in record.explanations if e.explainer == "scripted"]
        assert {s.method for s in mine.scores} == {"detection", "fuzzing", "simulation"}
        for s in mine.scores:
            assert s.scorer == "judge" and s.n > 0 and s.n_unparsed == 0
            assert s.score is None or s.ci_low <= s.score <= s.ci_high
        assert record.explanation == mine.text
        assert {e.explainer for e in record.explanations} == {
            "scripted",
            store.EXPLAINER_PEAKS,
            f"{store.EXPLAINER_RANDOM}:scripted",
        }
        items = held_out_items(index, features[0], ScoreConfig())
        n_firing = sum(it.firing for it in items)
        assert mine.score("detection").n == len(items) and n_firing > 0


def test_garbage_answers_are_reported_unparsed(index_path) -> None:
    with FeatureIndex(index_path) as index:
        features = [f for f in range(index.n_features) if index.examples(f, "heldout")][:1]
        run = explain_features(index, features, Scripted(lambda _: "hmm\nwell\n"))
        assert run.unparsed == features
        score_explanations(index, Scripted(lambda _: "perhaps"), ScoreConfig(bootstrap=10))
        (peaks,) = [e for e in index.feature(features[0]).explanations
                    if e.explainer == store.EXPLAINER_PEAKS]  # fmt: skip
        for s in peaks.scores:
            assert s.score is None and s.n == 0 and s.n_unparsed > 0
        assert index.feature(features[0]).explanation is None  # a baseline never describes it


def test_raw_neurons_are_explained_and_scored(built, tmp_path) -> None:
    path = shutil.copy(built[1], tmp_path / "neurons.db")
    with FeatureIndex(path) as index:
        assert index.meta["source"]["kind"] == "neurons"
        features = [f for f in range(index.n_features) if index.examples(f, "heldout")][:2]
        explain_features(index, features, Scripted(_explainer))
        run = score_explanations(index, Scripted(_scorer, name="judge"), ScoreConfig(bootstrap=20))
        assert len(run.scored) == 3 * 3 * len(features)


def test_an_older_index_is_refused_with_a_rebuild_hint(index_path) -> None:
    db = sqlite3.connect(index_path)
    with db:
        db.execute(
            "UPDATE meta SET value = ? WHERE key = 'format'", (json.dumps("saescope.index/2"),)
        )
    db.close()
    with FeatureIndex(index_path) as index:
        assert index.feature(0).explanations == []  # still readable
        with pytest.raises(SaescopeError, match=r"saescope score.*rebuild.*--overwrite"):
            score_explanations(index, Scripted(_scorer))
        with pytest.raises(SaescopeError, match=r"saescope explain.*rebuild"):
            explain_features(index, [0], Scripted(_explainer))


def test_peaks_baseline_text() -> None:
    assert peaks_explanation([(" sea", 3), ("\n", 1)]) == "the tokens ' sea', '\\n'"
    assert peaks_explanation([]) is None
