"""Killing the server mid-request loses nothing (the index is read-only) and a restart on the
same index serves again at once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from browser import free_port


def start(root: Path, index: Path, port: int) -> subprocess.Popen:
    src = Path(__file__).resolve().parents[2] / "src"
    env = os.environ | {"PYTHONPATH": str(src)}
    argv = [sys.executable, "-m", "saescope", "serve", "--index", f"tiny={index}",
            "--model", str(root / "model"), "--dtype", "fp32", "--device", "cpu",
            "--port", str(port)]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def get(url: str, data: dict | None = None, timeout: float = 30) -> tuple[int, str]:
    body = None if data is None else json.dumps(data).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_up(proc: subprocess.Popen, base: str) -> None:
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if get(f"{base}/i/tiny", timeout=2)[0] == 200:
                return
        except OSError:
            threading.Event().wait(0.1)


def test_kill_mid_request_then_restart(built) -> None:
    root, index = built
    before = hashlib.sha256(index.read_bytes()).hexdigest()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(root, index, port)
    try:
        wait_up(proc, base)
        body = {"prompt": "The death of", "edits": "clamp 1=50", "max_new_tokens": 64}
        slow = threading.Thread(target=lambda: _ignore(get, f"{base}/api/i/tiny/steer", body))
        slow.start()
        while json.loads(get(f"{base}/api/queue")[1])["pending"] == 0:
            threading.Event().wait(0.01)  # the steering job is on the model thread: kill now
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        slow.join(10)
    finally:
        proc.kill()
    assert hashlib.sha256(index.read_bytes()).hexdigest() == before
    proc = start(root, index, port)
    try:
        wait_up(proc, base)
        status, page = get(f"{base}/i/tiny/feature/1")
        assert status == 200 and "Feature 1" in page
    finally:
        proc.kill()
        proc.wait(10)


def _ignore(fn, *args) -> None:
    with contextlib.suppress(OSError):  # the server dies under it, as the test intends
        fn(*args)
