"""Descriptions and word search on a real index whose features are planted: the writer gets
activations made by rules on the tokens, so what every feature fires on is known."""

from __future__ import annotations

import sqlite3

import pytest
import torch
import transformers as tf
from tiny_models import COOKING, TINY_CONFIGS, cooking_tokenizer

from saescope.data import ContextConfig, Corpus, keep_positions, pack_contexts
from saescope.errors import SaescopeError
from saescope.interpret.collect import Batch, CollectConfig
from saescope.interpret.index import build_index
from saescope.interpret.query import (
    TYPICAL_AGREEMENT,
    FeatureIndex,
    agreement,
    describe_feature,
    peaks_text,
)
from saescope.interpret.sources import FeatureSource
from saescope.models import LanguageModel

SITE = "layers.1.resid_post"
CONTEXT = ContextConfig(context_size=16, seed=None)
CFG = CollectConfig(top=4, samples=10, zeros=2, before=4, after=2, zero_pool=16)
SENTENCES = COOKING
DOCS = [SENTENCES["pasta"]] * 30 + [SENTENCES["cookie"]] * 10 + [SENTENCES["war"]] * 30
DOCS += [SENTENCES["chef"]] * 4

COOK, HALF, COOKIE, OUTLIER, DENSE, PROMOTES, CONTEXT_ONLY, EXPLAINED = range(8)


def planted(tokens: list[str]) -> torch.Tensor:
    """(N, 64) activations of the planted features on these tokens (everything else 0)."""
    rules = {
        COOK: {" cook": 5.0},
        HALF: {" cook": 6.0, " garden": 7.0},
        COOKIE: {" cookie": 9.0},
        OUTLIER: {"'s": 40.0, " kitchen": 3.0, " pasta": 3.0},
        PROMOTES: {" army": 4.0},
        CONTEXT_ONLY: {" tasted": 4.0},
        EXPLAINED: {" chef": 4.0},
    }
    acts = torch.zeros(len(tokens), 64)
    for i, token in enumerate(tokens):
        for f, rule in rules.items():
            acts[i, f] = rule.get(token, 0.0)
        acts[i, DENSE] = 2.0 if token == " war" else 1.0
    return acts


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("planted")
    tokenizer = cooking_tokenizer()
    hf = tf.AutoModelForCausalLM.from_config(TINY_CONFIGS["llama"]()).eval()
    cook = tokenizer.convert_tokens_to_ids("Ġcook")
    with torch.no_grad():  # only feature PROMOTES writes towards ' cook'
        hf.lm_head.weight[cook] = 0.0
        hf.lm_head.weight[cook, PROMOTES] = 5.0
    model = LanguageModel.wrap(hf, tokenizer, name="tiny-cooking")
    source = FeatureSource(kind="neurons", site=SITE, n_features=64, d_in=64, identity="planted")

    def batches(start: int):
        ids = torch.stack(list(pack_contexts(Corpus("cooking", DOCS), tokenizer, CONTEXT)))
        ctx, pos = torch.nonzero(keep_positions(ids, tokenizer), as_tuple=True)
        acts = planted([tokenizer.decode([int(t)]) for t in ids[ctx, pos]])
        yield Batch(ids, torch.arange(len(ids)), acts, ctx, pos), len(ids)

    out = build_index(
        source, model, batches, tmp_path / "index.db", 10_000, {}, CFG, progress=False
    )
    db = sqlite3.connect(out)
    with db:
        db.execute(
            "INSERT INTO explanations (feature, explainer, prompt_version, explanation, answer, "
            "prompt_tokens, completion_tokens, created) "
            "VALUES (?, 'test', 'v', 'a cook or a chef', '', 0, 0, 'now')",
            (EXPLAINED,),
        )
    db.close()
    return out


def test_a_description_shows_where_a_feature_typically_fires_when_its_top_disagrees(index_path):
    with FeatureIndex(index_path) as index:
        outlier = index.feature(OUTLIER)
        assert outlier.peaks == [("'s", CFG.top)]  # its top contexts are all the outlier
        typical = outlier.typical
        assert {t for t, _ in typical} <= {" kitchen", " pasta", "'s"}
        assert agreement(outlier.peaks, typical) < TYPICAL_AGREEMENT
        described = index.describe([OUTLIER, COOK, DENSE, EXPLAINED])
        assert described[OUTLIER] == f'top: "\'s"×{CFG.top}; typically: {peaks_text(typical)}'
        assert outlier.description == described[OUTLIER] and index.typical(OUTLIER) == typical
        # where top and typical agree, the top alone
        assert described[COOK] == f"' cook'×{CFG.top}" == index.feature(COOK).description
        assert described[DENSE] == "[dense 100%] ' war'×4" == index.feature(DENSE).description
        assert described[EXPLAINED] == "a cook or a chef"


def test_the_description_rule() -> None:
    top = [("'", 20)]
    typical = [(" pasta", 3), (" kitchen", 2), ("'", 2), (" garden", 1)]
    assert agreement(top, typical) == pytest.approx(2 / 8)
    assert describe_feature(top, typical, 0.01) == (
        "top: \"'\"×20; typically: ' pasta'×3, ' kitchen'×2, \"'\"×2"
    )
    agreeing = [(" Pasta", 3), (" kitchen", 2)]  # case and spaces do not make a disagreement
    assert describe_feature([(" pasta", 9)], agreeing, 0.01) == "' pasta'×9"
    assert describe_feature(top, [(" pasta", 2)], 0.01) == '"\'"×20'  # too few samples
    assert describe_feature(top, typical, 0.47, "outliers") == "[dense 47%] outliers"


def test_word_search_ranks_whole_peaks_by_concentration_then_the_weaker_matches(index_path):
    with FeatureIndex(index_path) as index:
        hits = index.search("Cook", limit=64)
        order = [h.feature for h in hits]
        by = {h.feature: h for h in hits}
        assert order[0] == COOK and by[COOK].score == 1.0
        assert (by[COOK].reason, by[COOK].whole, by[COOK].matched) == ("peak", True, (" cook",))
        peaks = [h for h in hits if (h.reason, h.whole) == ("peak", True)]
        assert HALF in {h.feature for h in peaks} and by[HALF].score < 1.0
        assert [h.score for h in peaks] == sorted((h.score for h in peaks), reverse=True)
        # then the explanation, the promoted token, the part of a token, the context text
        assert (by[EXPLAINED].reason, by[EXPLAINED].whole) == ("explanation", True)
        assert (by[PROMOTES].reason, by[PROMOTES].whole) == ("promoted", True)
        assert by[PROMOTES].matched == (" cook",)
        assert (by[COOKIE].reason, by[COOKIE].whole, by[COOKIE].score) == ("peak", False, 1.0)
        assert (by[CONTEXT_ONLY].reason, by[CONTEXT_ONLY].whole) == ("context", True)
        positions = [order.index(f) for f in (EXPLAINED, PROMOTES, COOKIE, CONTEXT_ONLY)]
        assert positions == sorted(positions) and positions[0] == len(peaks)
        assert by[DENSE].dense and not by[COOK].dense
        # a whole word of a longer query: ' cookie' is the whole match now, ' cook' is not one
        assert index.search("cookie")[0].feature == COOKIE
        assert all(h.feature != COOK for h in index.search("cookie"))
        assert index.search("kitchen")[0].feature == OUTLIER  # found where it typically fires
        with pytest.raises(SaescopeError, match="empty"):
            index.search("  ")


def test_a_feature_seen_once_on_the_word_is_not_fully_concentrated(index_path, tmp_path):
    """A share counts against as many examples as the index keeps for a feature (``collect``):
    a feature whose only example peaks on the word scores 1/top, not 1, and ranks after one
    that peaks on it in all its examples (on the quickstart SAE ' war'×1 had outranked
    ' War'×14)."""
    import shutil

    copy = shutil.copy(index_path, tmp_path / "index.db")
    db = sqlite3.connect(copy)
    with db:  # HALF, as if it had fired once, on ' cook'
        cook = db.execute("SELECT token FROM peaks WHERE feature = ?", (COOK,)).fetchone()[0]
        db.execute("DELETE FROM peaks WHERE feature = ?", (HALF,))
        db.execute(
            "INSERT INTO peaks (feature, rank, token, count) VALUES (?, 0, ?, 1)", (HALF, cook)
        )
        db.execute("DELETE FROM examples WHERE feature = ? AND kind = 'sample'", (HALF,))
    db.close()
    with FeatureIndex(copy) as index:
        by = {h.feature: h for h in index.search("cook", limit=64)}
    assert by[HALF].score == pytest.approx(1 / CFG.top)
    assert by[COOK].score == 1.0
