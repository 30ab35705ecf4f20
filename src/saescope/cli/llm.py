"""The LLM backend options shared by ``explain`` and ``score``: one function adds them, one reads
them back into a ``ChatBackend``. ``prefix`` gives a command a second, independent set (``score``
takes ``--scorer-llm``, ``--scorer-api-base``, ...)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from saescope.errors import SaescopeError
from saescope.interpret.llm import DEFAULT_EXPLAINER, ChatBackend, make_backend


def _bounded(kind: Callable[[str], float], low: float, strict: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(
                f"expected {'>' if strict else '>='} {low}, got {text}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def add_backend_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """Add ``--{prefix}llm``, ``--{prefix}api-base``, ``--{prefix}api-key-env``,
    ``--{prefix}llm-concurrency``, ``--{prefix}llm-timeout`` and ``--{prefix}llm-retries`` as
    one argument group (``prefix`` such as ``"scorer-"``; read back by :func:`backend_from_args`
    with the same prefix)."""
    role = prefix.rstrip("-") or "LLM"
    group = parser.add_argument_group(
        f"{role} backend",
        f"the chat model (default: {DEFAULT_EXPLAINER}, embedded and offline, but weak: a real "
        "study points --api-base at a strong model)",
    )
    group.add_argument(
        f"--{prefix}llm",
        metavar="MODEL",
        default=None,
        help=f"without --{prefix}api-base: {DEFAULT_EXPLAINER} (the default), a chat model "
        f"directory or a .gguf file; with --{prefix}api-base: the model name the endpoint serves",
    )
    group.add_argument(
        f"--{prefix}api-base",
        metavar="URL",
        default=None,
        help="an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp's "
        "server, LM Studio), e.g. http://localhost:8000/v1",
    )
    group.add_argument(
        f"--{prefix}api-key-env",
        metavar="VAR",
        default="OPENAI_API_KEY",
        help="environment variable holding the endpoint's API key (unset: no key is sent)",
    )
    group.add_argument(
        f"--{prefix}llm-concurrency",
        metavar="N",
        type=_bounded(int, 1, strict=False),
        default=4,
        help="requests in flight at once to an endpoint; conversations per batch for a local model",
    )
    group.add_argument(
        f"--{prefix}llm-timeout",
        metavar="S",
        type=_bounded(float, 0, strict=True),
        default=60.0,
        help="seconds an endpoint may take to accept the connection or to send the next part of "
        "its answer (a timeout is retried like a 5xx)",
    )
    group.add_argument(
        f"--{prefix}llm-retries",
        metavar="N",
        type=_bounded(int, 0, strict=False),
        default=4,
        help="retries of a request after a 429, a 5xx, a timeout or a refused connection "
        "(exponential backoff, honouring Retry-After)",
    )


def backend_from_args(args: argparse.Namespace, prefix: str = "") -> ChatBackend:
    """The backend that the options added by :func:`add_backend_arguments` with ``prefix`` name."""
    dest = prefix.replace("-", "_")
    if getattr(args, f"{dest}api_base") and not getattr(args, f"{dest}llm"):
        raise SaescopeError(
            f"--{prefix}api-base needs --{prefix}llm MODEL: the name of the model the endpoint "
            "serves (e.g. gpt-4o-mini, or the name vLLM / Ollama / llama.cpp's server was started with)"
        )
    return make_backend(
        model=getattr(args, f"{dest}llm"),
        api_base=getattr(args, f"{dest}api_base"),
        api_key_env=getattr(args, f"{dest}api_key_env"),
        concurrency=int(getattr(args, f"{dest}llm_concurrency")),
        timeout=float(getattr(args, f"{dest}llm_timeout")),
        max_retries=int(getattr(args, f"{dest}llm_retries")),
    )
