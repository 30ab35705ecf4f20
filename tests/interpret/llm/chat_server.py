"""A small OpenAI-protocol server on 127.0.0.1 that answers with the real local default model.

No installable OpenAI-compatible server runs here without building llama.cpp or vLLM, so the
suite carries its own: ``POST /v1/chat/completions`` answered by ``LocalBackend`` (real text,
real token counts). A marker in the last message steers the transport for the test that needs it:
``[429 once]`` (429 with ``Retry-After: 2`` the first time that text is seen), ``[503]`` (always
503), ``[slow]`` (answers only after the client has given up), ``[401]`` (refused, echoing the
key as OpenAI's 401 does), ``[garbage]`` (200 with a body that is not JSON).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from saescope.interpret.llm import Sampling
from saescope.interpret.llm.local import LocalBackend


class ChatServer:
    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.authorization: list[str | None] = []
        self.seen: set[str] = set()
        self.release = threading.Event()  # ends a [slow] handler at teardown
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest's output clean
                pass

            def do_POST(self) -> None:
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server.answer(self)
                finally:
                    with server.lock:
                        server.in_flight -= 1

        return Handler

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        if h.path != "/v1/chat/completions":
            return self.send(h, 404, {"error": {"message": f"no route {h.path}"}})
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        with self.lock:
            self.bodies.append(body)
            self.authorization.append(h.headers.get("Authorization"))
        last = body["messages"][-1]["content"]
        if "[429 once]" in last:
            with self.lock:
                first = last not in self.seen
                self.seen.add(last)
            if first:
                return self.send(h, 429, {"error": {"message": "rate limited"}}, retry_after="2")
        if "[503]" in last:
            return self.send(h, 503, {"error": {"message": "the engine is overloaded"}})
        if "[401]" in last:
            key = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {key}"
            return self.send(h, 401, {"error": {"message": message}})
        if "[slow]" in last:
            self.release.wait(10)
            return
        if "[garbage]" in last:
            h.send_response(200)
            h.send_header("Content-Length", "9")
            h.end_headers()
            h.wfile.write(b"not json!")
            return
        sampling = Sampling(
            max_tokens=body["max_tokens"],
            temperature=body.get("temperature", 0.0),
            seed=body.get("seed", 0),
        )
        reply = self.backend.chat(body["messages"], sampling)
        self.send(
            h,
            200,
            {
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                    "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                },
            },
        )

    def send(
        self, h: BaseHTTPRequestHandler, status: int, payload: Any, retry_after: str | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            h.send_header("Retry-After", retry_after)
        h.end_headers()
        h.wfile.write(data)
