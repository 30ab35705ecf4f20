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

__all__ = ["ChatBackend", "ChatMessage", "ChatReply", "Sampling"]


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
