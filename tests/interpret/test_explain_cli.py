"""``saescope explain`` and ``score`` on the real command line (the LLM scripted, as in
test_explain.py), and explanations shown by ``show`` and ``search``."""

from __future__ import annotations

import shutil

import pytest
from test_explain import Scripted, _explainer, _scorer, built  # noqa: F401  (fixture)

import saescope.cli.llm as cli_llm
from saescope.cli import main


@pytest.fixture
def index_path(built, tmp_path, monkeypatch):  # noqa: F811
    path = shutil.copy(built[0], tmp_path / "index.db")
    backends = {"": Scripted(_explainer), "scorer-": Scripted(_scorer, name="judge")}
    monkeypatch.setattr(cli_llm, "backend_from_args", lambda args, prefix="": backends[prefix])
    return path


def test_explain_then_score_then_show_and_search(index_path, capsys) -> None:
    assert main(["explain", "--index", str(index_path), "--sample", "3", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "explainer scripted: 3 explained (0 answers unparsed), 0 already done" in out
    assert main(["explain", "--index", str(index_path), "--sample", "3"]) == 0
    assert "0 explained (0 answers unparsed), 3 already done" in capsys.readouterr().out
    args = ["score", "--index", str(index_path), "--method", "detection", "--bootstrap", "20"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "scorer judge: 9 scores (0 already done)" in out  # 3 features x 3 explanations
    assert "baseline:peak-tokens" in out and "baseline:random-feature:scripted" in out
    from saescope.interpret.query import FeatureIndex

    with FeatureIndex(index_path) as index:
        (f,) = [
            f for (f,) in index.db.execute(
                "SELECT feature FROM explanations WHERE explainer = 'scripted' LIMIT 1")
        ]  # fmt: skip
        text = index.feature(f).explanation
    assert main(["show", str(f), "--index", str(index_path)]) == 0
    shown = capsys.readouterr().out
    assert f"explanation: {text}" in shown and "detection" in shown and "n=" in shown
    word = text.split("'")[1].strip()
    assert main(["search", word, "--index", str(index_path)]) == 0
    assert text in capsys.readouterr().out


def test_bad_arguments_exit_2(index_path, caplog) -> None:
    assert main(["score", "--index", str(index_path), "--method", "guessing"]) == 2
    assert "scoring methods must be among detection, fuzzing, simulation" in caplog.text
    with pytest.raises(SystemExit):  # argparse: one of --features, --sample, --all
        main(["explain", "--index", str(index_path)])
