"""The OpenAI-compatible client against a real HTTP server on localhost (conftest.ChatServer),
whose answers come from the real local default model."""

from __future__ import annotations

import socket

import pytest
from chat_server import ChatServer

from saescope.errors import SaescopeError
from saescope.interpret.llm import ChatBackend, ChatMessage, Sampling, Usage, make_backend
from saescope.interpret.llm.local import LocalBackend
from saescope.interpret.llm.openai import OpenAIBackend

SHORT = Sampling(max_tokens=6)


def ask(text: str) -> list[ChatMessage]:
    return [{"role": "user", "content": text}]


class Sleeps(list[float]):
    """The waits the client asked for, recorded instead of slept (its injected clock)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_round_trip_is_the_local_models_answer(
    chat_server: ChatServer, local_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAESCOPE_TEST_KEY", "sk-test-123")
    backend = make_backend("smollm2", chat_server.url, api_key_env="SAESCOPE_TEST_KEY")
    assert isinstance(backend, OpenAIBackend) and isinstance(backend, ChatBackend)
    reply = backend.chat(ask("What is the capital of France?"), SHORT)
    direct = local_backend.chat(ask("What is the capital of France?"), SHORT)
    assert reply == direct and reply.text.strip() and reply.completion_tokens > 0
    assert backend.name == "smollm2"
    assert backend.usage == Usage(1, 0, direct.prompt_tokens, direct.completion_tokens)
    [body] = chat_server.bodies
    assert body["model"] == "smollm2" and body["max_tokens"] == 6 and body["temperature"] == 0
    assert "seed" not in body  # greedy: a field some servers reject is not sent
    assert chat_server.authorization == ["Bearer sk-test-123"]


def test_concurrency_limit_is_respected(chat_server: ChatServer) -> None:
    backend = OpenAIBackend("smollm2", chat_server.url, concurrency=2)
    questions = [f"Count to {n}." for n in range(6)]
    replies = backend.chat_many([ask(q) for q in questions], Sampling(max_tokens=3))
    assert len(replies) == 6 and all(r.completion_tokens > 0 for r in replies)
    # in order: each reply is the one to its own question
    asked = [b["messages"][-1]["content"] for b in chat_server.bodies]
    assert sorted(asked) == sorted(questions)
    assert chat_server.max_in_flight == 2
    assert backend.usage.requests == 6


def test_429_is_retried_after_retry_after(chat_server: ChatServer) -> None:
    sleeps = Sleeps()
    backend = OpenAIBackend("smollm2", chat_server.url, sleep=sleeps)
    reply = backend.chat(ask("Say hi. [429 once]"), SHORT)
    assert reply.text.strip() and reply.completion_tokens > 0
    assert sleeps == [2.0]  # the server's Retry-After, not the backoff
    assert len(chat_server.bodies) == 2
    assert backend.usage.requests == 1 and backend.usage.retries == 1


def test_5xx_exhaustion_is_a_clear_error(chat_server: ChatServer) -> None:
    sleeps = Sleeps()
    backend = OpenAIBackend("smollm2", chat_server.url, max_retries=2, backoff=0.5, sleep=sleeps)
    with pytest.raises(SaescopeError) as err:
        backend.chat(ask("Say hi. [503]"), SHORT)
    message = str(err.value)
    assert chat_server.url + "/chat/completions" in message
    assert "failed 3 time(s)" in message and "HTTP 503" in message
    assert "the engine is overloaded" in message and "--llm-retries" in message
    assert len(chat_server.bodies) == 3 and backend.usage.retries == 2
    # exponential backoff with jitter in [0.5, 1) of 0.5 * 2**n
    assert 0.25 <= sleeps[0] < 0.5 and 0.5 <= sleeps[1] < 1.0


def test_timeout_is_a_clear_error(chat_server: ChatServer) -> None:
    backend = OpenAIBackend("smollm2", chat_server.url, timeout=0.3, max_retries=0)
    with pytest.raises(SaescopeError, match=r"no answer within --llm-timeout 0\.3s") as err:
        backend.chat(ask("Say hi. [slow]"), SHORT)
    assert chat_server.url in str(err.value) and "failed 1 time(s)" in str(err.value)


def test_refused_request_names_status_and_never_the_key(
    chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAESCOPE_TEST_KEY", "sk-secret-987")
    backend = OpenAIBackend("smollm2", chat_server.url, api_key_env="SAESCOPE_TEST_KEY")
    with pytest.raises(SaescopeError) as err:
        backend.chat(ask("Say hi. [401]"), SHORT)
    message = str(err.value)
    assert "HTTP 401" in message and "Incorrect API key provided: ***" in message
    assert "sk-secret-987" not in message and "$SAESCOPE_TEST_KEY, which is set" in message
    assert len(chat_server.bodies) == 1  # a 401 is not retried


def test_answer_without_choices_is_a_clear_error(chat_server: ChatServer) -> None:
    backend = OpenAIBackend("smollm2", chat_server.url)
    with pytest.raises(SaescopeError, match=r"without choices\[0\]\.message\.content.*not json!"):
        backend.chat(ask("Say hi. [garbage]"), SHORT)


def test_refused_connection_is_retried_then_a_clear_error() -> None:
    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    backend = OpenAIBackend("m", f"http://127.0.0.1:{port}/v1", max_retries=1, sleep=sleeps)
    with pytest.raises(SaescopeError, match=r"127\.0\.0\.1.*failed 2 time\(s\).*could not connect"):
        backend.chat(ask("hi"), SHORT)
    assert len(sleeps) == 1 and backend.usage.retries == 1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"api_base": "localhost:8000"}, "not an http"),
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"max_retries": -1}, "retries must be >= 0"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, expected: str) -> None:
    settings = {"model": "m", "api_base": "http://127.0.0.1:1/v1"} | kwargs
    with pytest.raises(SaescopeError, match=expected):
        make_backend(**settings)


def test_api_base_without_a_model_name_is_refused() -> None:
    with pytest.raises(SaescopeError, match="needs the name of the model"):
        make_backend(api_base="http://127.0.0.1:1/v1")
