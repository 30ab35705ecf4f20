"""Fixtures of the LLM backend tests: the real default explainer, and a server speaking the
OpenAI protocol that answers with it (chat_server.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from chat_server import ChatServer

from saescope.interpret.llm.local import LocalBackend


@pytest.fixture(scope="session")
def local_backend() -> LocalBackend:
    """The real default explainer (converted from its GGUF once, then loaded in ~2 s)."""
    return LocalBackend(batch_size=4)


@pytest.fixture
def chat_server(local_backend: LocalBackend) -> Iterator[ChatServer]:
    server = ChatServer(local_backend)
    thread = threading.Thread(target=server.http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.http.shutdown()
        server.http.server_close()
        thread.join()
