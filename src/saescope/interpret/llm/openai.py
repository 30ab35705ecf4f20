"""An OpenAI-compatible chat-completions endpoint as a ``ChatBackend``.

One client for OpenAI, vLLM, Ollama, llama.cpp's server and LM Studio: they all answer
``POST {api_base}/chat/completions``. Written on the standard library (``urllib.request``), so it
needs no extra: requests run on a thread pool, at most ``concurrency`` in flight at once (across
every caller of this backend), each retried with exponential backoff and jitter on 429, 5xx,
timeouts and refused connections, honouring the server's ``Retry-After``.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any

from saescope.errors import SaescopeError
from saescope.interpret.llm import ChatMessage, ChatReply, Sampling, Usage

_RETRIED_STATUS = frozenset({408, 409, 429})
"""Statuses worth another attempt besides every 5xx (OpenAI's own client retries these too)."""
_EXCERPT = 300
"""Characters of a response body quoted in an error."""


class OpenAIBackend:
    """A chat model behind an OpenAI-compatible HTTP endpoint.

    ``api_base`` is the URL the API lives under (``https://api.openai.com/v1``,
    ``http://localhost:8000/v1``); a URL already ending in ``/chat/completions`` is used as is.
    The key is read from the environment variable ``api_key_env`` once, here; when it is unset no
    ``Authorization`` header is sent (local servers need none). The key never appears in an error.
    Attempt ``n`` (from 0) that fails transiently waits ``backoff * 2**n`` seconds, capped at
    ``max_backoff``, times a jitter in [0.5, 1) drawn from this backend's own ``random.Random(seed)``;
    a ``Retry-After`` header replaces that wait (capped at ``max_backoff`` too). ``timeout`` is
    urllib's: the seconds to connect, and then between any two reads of the answer.
    """

    def __init__(
        self,
        model: str,
        api_base: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not model:
            raise SaescopeError("an endpoint backend needs the model name the endpoint serves")
        if not api_base.startswith(("http://", "https://")):
            raise SaescopeError(
                f"--api-base {api_base!r} is not an http(s) URL; expected e.g. "
                "https://api.openai.com/v1 or http://localhost:8000/v1"
            )
        if concurrency < 1:
            raise SaescopeError(f"LLM concurrency must be >= 1, got {concurrency}")
        if not timeout > 0:
            raise SaescopeError(f"LLM timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise SaescopeError(f"LLM retries must be >= 0, got {max_retries}")
        base = api_base.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self._key = os.environ.get(api_key_env) or None
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()  # guards the counters and the jitter generator
        self._usage = Usage()

    @property
    def name(self) -> str:
        return self.model

    @property
    def usage(self) -> Usage:
        with self._lock:
            return self._usage

    def chat(self, messages: list[ChatMessage], sampling: Sampling = Sampling()) -> ChatReply:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
        }
        if (
            sampling.temperature > 0
        ):  # some servers reject fields they do not know; send only when it matters
            body["seed"] = sampling.seed
        payload = self._post(json.dumps(body).encode())
        reply = self._parse(payload)
        with self._lock:
            u = self._usage
            self._usage = Usage(
                u.requests + 1,
                u.retries,
                u.prompt_tokens + reply.prompt_tokens,
                u.completion_tokens + reply.completion_tokens,
            )
        return reply

    def chat_many(
        self, conversations: list[list[ChatMessage]], sampling: Sampling = Sampling()
    ) -> list[ChatReply]:
        """Answers in order, ``concurrency`` requests at a time. The first failure is raised once
        the requests already sent have finished; those not yet sent are not sent."""
        if len(conversations) <= 1:
            return [self.chat(c, sampling) for c in conversations]
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations)))
        try:
            futures = [pool.submit(self.chat, c, sampling) for c in conversations]
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _post(self, data: bytes) -> bytes:
        """The response body of one successful request, after up to ``max_retries`` retries."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        attempt = 0
        while True:
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            retry_after: float | None = None
            try:
                with self._slots, urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as err:
                text = err.read().decode("utf-8", "replace")
                if err.code not in _RETRIED_STATUS and err.code < 500:
                    raise SaescopeError(self._status_message(err.code, text)) from None
                retry_after = _retry_after(err.headers.get("Retry-After"))
                failure = f"HTTP {err.code}: {self._excerpt(text)}"
            except TimeoutError:
                failure = f"no answer within --llm-timeout {self.timeout:g}s"
            except urllib.error.URLError as err:
                if isinstance(err.reason, TimeoutError):
                    failure = f"no answer within --llm-timeout {self.timeout:g}s"
                else:
                    failure = f"could not connect ({err.reason})"
            except (ConnectionError, http.client.HTTPException) as err:  # closed mid-answer
                failure = f"the connection broke ({type(err).__name__}: {err})"
            if attempt >= self.max_retries:
                raise SaescopeError(
                    f"LLM endpoint {self.url} failed {attempt + 1} time(s), last: "
                    f"{self._redact(failure)}; check the server, or raise --llm-retries / "
                    "--llm-timeout"
                )
            with self._lock:
                delay = self.backoff * 2**attempt * (0.5 + 0.5 * self._rng.random())
                u = self._usage
                self._usage = Usage(u.requests, u.retries + 1, u.prompt_tokens, u.completion_tokens)
            self._sleep(min(self.max_backoff, retry_after if retry_after is not None else delay))
            attempt += 1

    def _parse(self, payload: bytes) -> ChatReply:
        try:
            answer = json.loads(payload)
            text = answer["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise SaescopeError(
                f"LLM endpoint {self.url} answered without choices[0].message.content "
                f"({type(err).__name__}: {err}): {self._excerpt(payload.decode('utf-8', 'replace'))}"
            ) from None
        # Servers that report no usage count as 0 tokens: the text is still an answer.
        usage = answer.get("usage") or {}
        return ChatReply(
            text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        )

    def _status_message(self, status: int, text: str) -> str:
        hint = "check --llm (the model name) and --api-base"
        if status in (401, 403):
            state = "set" if self._key else "not set"
            hint = f"the key is read from ${self.api_key_env}, which is {state}; pass --api-key-env VAR"
        return f"LLM endpoint {self.url} refused the request: HTTP {status}: {self._excerpt(text)} ({hint})"

    def _excerpt(self, text: str) -> str:
        flat = " ".join(text.split())
        return self._redact(flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + "...")

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
