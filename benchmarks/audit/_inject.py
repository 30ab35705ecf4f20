"""Run ``saescope.cli.main`` with fault-injection points, for the audit's kill and lock cases.

    python _inject.py SPEC_JSON -- capture --model ... (the saescope command line)

SPEC_JSON is a list of points ``{"target": "module:attr", "call": N, "when": "before"|"after",
"action": "kill"|"pause", "marker": PATH}``: on the Nth call of ``module.attr`` (1-based) the
process SIGKILLs itself (a kill at an exact moment, no timing) or writes ``marker`` and sleeps
until it is killed (so a second command can meet it holding its lock). ``{"fast_clock":
"module"}`` replaces that module's ``time`` with a clock that jumps an hour per call, so
time-based checkpoints happen at every chance.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import sys
import time
import types


def _act(point: dict) -> None:
    if point.get("action", "kill") == "pause":
        with open(point["marker"], "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(1)
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(point: dict) -> None:
    module_name, attr = point["target"].split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, attr)
    calls = {"n": 0}

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        hit = calls["n"] == point.get("call", 1)
        if hit and point.get("when", "after") == "before":
            _act(point)
        result = original(*args, **kwargs)
        if hit:
            _act(point)
        return result

    setattr(module, attr, wrapper)


class _FastClock(types.SimpleNamespace):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 3600.0
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


def main() -> int:
    split = sys.argv.index("--")
    for point in json.loads(sys.argv[1]):
        if "fast_clock" in point:
            importlib.import_module(point["fast_clock"]).time = _FastClock()
        else:
            _wrap(point)
    from saescope.cli import main as saescope_main

    return saescope_main(sys.argv[split + 1 :])


if __name__ == "__main__":
    sys.exit(main())
