"""``saescope serve`` on the command line: index names, several indexes, the host warning,
and clear errors before anything is served."""

from __future__ import annotations

import pytest
import uvicorn

from saescope import cli
from saescope.cli.serve import index_specs
from saescope.errors import SaescopeError


def test_index_names_default_to_the_stem_and_must_differ() -> None:
    assert index_specs(["runs/a/index.db", "w8k=runs/b/index.db"]) == [
        ("index", "runs/a/index.db"),
        ("w8k", "runs/b/index.db"),
    ]
    with pytest.raises(SaescopeError, match="two indexes are named 'index'"):
        index_specs(["a/index.db", "b/index.db"])


def test_two_indexes_and_another_host_warn_then_serve(built, monkeypatch, caplog) -> None:
    _, index = built
    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    argv = ["serve", "--index", f"w1={index}", "--index", f"w2={index}", "--model", "none",
            "--host", "0.0.0.0", "--port", "9999"]  # fmt: skip
    assert cli.main(argv) == 0
    assert ran["host"] == "0.0.0.0" and ran["port"] == 9999
    assert "no login" in caplog.text
    from starlette.testclient import TestClient

    with TestClient(ran["app"]) as c:
        assert c.get("/i/w1/feature/1").status_code == 200
        assert c.get("/i/w2/feature/1").status_code == 200
        assert "w1" in c.get("/").text and "w2" in c.get("/").text


def test_clear_errors_before_serving(built, tmp_path, caplog) -> None:
    root, index = built
    assert cli.main(["serve", "--index", str(tmp_path / "missing.db"), "--model", "none"]) == 2
    assert "no feature index at" in caplog.text
    argv = ["serve", "--index", str(index), "--sae", str(tmp_path), "--model", "none"]
    assert cli.main(argv) == 2 and "no SAE there" in caplog.text
    argv = ["serve", "--index", f"a={index}", "--index", f"b={index}", "--sae", str(root / "sae")]
    assert cli.main([*argv, "--model", "none"]) == 2 and "give NAME=" in caplog.text
    argv = ["serve", "--index", f"bad/name={index}", "--model", "none"]
    assert cli.main(argv) == 2 and "use letters, digits" in caplog.text
