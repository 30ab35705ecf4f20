"""The backend options of ``explain`` / ``score``: added once per prefix, read back into a backend."""

from __future__ import annotations

import argparse

import pytest

from saescope.cli.llm import add_backend_arguments, backend_from_args
from saescope.errors import SaescopeError
from saescope.interpret.llm import DEFAULT_EXPLAINER
from saescope.interpret.llm.local import LocalBackend
from saescope.interpret.llm.openai import OpenAIBackend


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="saescope score")
    add_backend_arguments(p)
    add_backend_arguments(p, prefix="scorer-")
    return p


def test_two_independent_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-1")
    args = parser().parse_args(
        [
            "--api-base", "http://127.0.0.1:9/v1", "--llm", "gpt-x", "--api-key-env", "MY_KEY",
            "--llm-concurrency", "8", "--llm-timeout", "2.5", "--llm-retries", "0",
            "--scorer-llm-concurrency", "3",
        ]
    )  # fmt: skip
    explainer = backend_from_args(args)
    assert isinstance(explainer, OpenAIBackend)
    assert explainer.url == "http://127.0.0.1:9/v1/chat/completions"
    assert (explainer.name, explainer.concurrency, explainer.timeout) == ("gpt-x", 8, 2.5)
    assert (explainer.max_retries, explainer.api_key_env) == (0, "MY_KEY")
    scorer = backend_from_args(args, prefix="scorer-")
    assert isinstance(scorer, LocalBackend)
    assert (scorer.name, scorer.batch_size) == (DEFAULT_EXPLAINER, 3)


def test_defaults() -> None:
    args = parser().parse_args([])
    assert (args.llm, args.api_base, args.api_key_env) == (None, None, "OPENAI_API_KEY")
    assert (args.scorer_llm_concurrency, args.scorer_llm_timeout, args.scorer_llm_retries) == (
        4,
        60.0,
        4,
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--llm-concurrency", "0"], "expected >= 1, got 0"),
        (["--scorer-llm-timeout", "0"], "expected > 0, got 0"),
        (["--llm-retries", "-1"], "expected >= 0, got -1"),
        (["--llm-retries", "two"], "expected a number, got 'two'"),
    ],
)
def test_bad_values_are_argparse_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(argv)
    assert exit_.value.code == 2 and expected in capsys.readouterr().err


def test_api_base_without_llm_is_a_clear_error() -> None:
    args = parser().parse_args(["--scorer-api-base", "http://127.0.0.1:9/v1"])
    with pytest.raises(SaescopeError, match=r"--scorer-api-base needs --scorer-llm MODEL"):
        backend_from_args(args, prefix="scorer-")
