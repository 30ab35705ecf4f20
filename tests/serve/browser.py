"""Serving an app on a real port for browser tests and the restart test."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: object) -> Iterator[str]:
    """``app`` under uvicorn on a free local port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def chromium_or_skip() -> str:
    """The browser's path; skip without it, but fail under CI (where .ci/run installs it)."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if found is None:
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the browser tests")
        pytest.skip(message)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed: CI must run the browser tests")
        pytest.skip("playwright is not installed (pip install 'saescope[dev]')")
    return found


class Shots:
    """Screenshots of each step: under ``root``, and also under $SAESCOPE_SCREENSHOTS."""

    def __init__(self, root: Path) -> None:
        self.dirs = [root] + (
            [Path(os.environ["SAESCOPE_SCREENSHOTS"])]
            if os.environ.get("SAESCOPE_SCREENSHOTS")
            else []
        )
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)

    def take(self, page: object, name: str) -> None:
        for d in self.dirs:
            page.screenshot(path=str(d / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
