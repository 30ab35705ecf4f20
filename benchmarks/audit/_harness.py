"""The audit's machinery: run a saescope command as a subprocess, classify what came back.

Outcomes (issue 12's table): good (a clear one-line error, or exit 0 with a result checked
correct), traceback ("Traceback" in the output), silent (exit 0 with a wrong result), unclear
(anything else, timeouts included: "runs until killed").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
INJECT = Path(__file__).with_name("_inject.py")
OUTCOMES = ("good", "traceback", "silent", "unclear")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src")
    e["COLUMNS"] = "1000"  # rich wraps log lines at the terminal width; keep a message one line
    e["CUDA_VISIBLE_DEVICES"] = ""  # "--device cuda" must meet a machine without CUDA
    e.setdefault("HF_HUB_OFFLINE", "1")
    e["TOKENIZERS_PARALLELISM"] = "false"
    return e


@dataclass
class Result:
    argv: list[str]
    rc: int | None
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.err + self.out

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    def message(self) -> str:
        """The error line the CLI printed (rich's "ERROR" or argparse's "error:")."""
        for line in self.text.splitlines():
            s = line.strip()
            if s.startswith("ERROR"):
                return s[len("ERROR") :].strip()
            if re.search(r"\berror: ", s):
                return s
        if "Traceback" in self.text:
            lines = [x for x in self.err.splitlines() if x.strip()]
            return lines[-1].strip() if lines else ""
        lines = [x.strip() for x in self.text.splitlines() if x.strip()]
        return lines[-1] if lines else ""


def sc(*args: object, timeout: float = 60, inject: list[dict] | None = None) -> Result:
    """Run ``python -m saescope ARGS`` (through the fault injector when ``inject`` is given)."""
    argv = [str(a) for a in args]
    if inject is None:
        cmd = [PYTHON, "-m", "saescope", *argv]
    else:
        cmd = [PYTHON, str(INJECT), json.dumps(inject), "--", *argv]
    return _run(cmd, timeout)


def py(code: str, timeout: float = 60) -> Result:
    """A library-level case: ``python -c CODE``."""
    return _run([PYTHON, "-c", code], timeout)


def _run(cmd: list[str], timeout: float) -> Result:
    start = time.monotonic()
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env(), check=False
        )
        rc: int | None = done.returncode
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = None, _s(exc.stdout), _s(exc.stderr)
    return Result(cmd, rc, out, err, time.monotonic() - start)


def _s(x: object) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")  # type: ignore[return-value]


def spawn(*args: object, inject: list[dict]) -> subprocess.Popen:
    cmd = [PYTHON, str(INJECT), json.dumps(inject), "--", *[str(a) for a in args]]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())


Check = Callable[[], tuple[bool, str]]


def classify(res: Result, check: Check | None = None, expect_error: bool = True) -> tuple[str, str]:
    """(outcome, note) of one command.

    ``check`` (run on exit 0) says whether the result is correct; without one, exit 0 is
    silent when ``expect_error`` (the input was bad) and good otherwise.
    """
    if res.timed_out:
        return "unclear", f"runs until killed (no result in {res.seconds:.0f} s)"
    if "Traceback" in res.text:
        return "traceback", res.message()
    if res.rc == 0:
        if check is not None:
            ok, note = check()
            return ("good" if ok else "silent"), note
        if expect_error:
            return "silent", "exit 0 where a refusal was expected: " + res.message()[:150]
        return "good", res.message()[:150]
    msg = res.message()
    if res.rc == 2 and msg:
        return "good", msg
    return "unclear", f"exit {res.rc}: {msg[:200]}"


def first_bad(*steps: Result) -> Result | None:
    """The first step that did not exit 0 (for a multi-step case whose steps must succeed)."""
    return next((s for s in steps if s.rc != 0), None)
