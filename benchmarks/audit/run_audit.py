"""Rerun issue 12's hostile audit: every case as a real ``python -m saescope`` subprocess.

    PYTHONPATH=src python benchmarks/audit/run_audit.py [-k SUBSTRING] [--keep DIR]

Builds a tiny random model, a cache, an SAE and an index once, runs each case in turn, classifies
it (good / traceback / silent / unclear, see _harness.py) and writes benchmarks/audit/RESULTS.md:
one table per category and one line per case (outcome, first line of the message, command).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _cases
import _cases_input  # noqa: F401 (registers the bad-file and bad-argument cases)
from _harness import OUTCOMES, ROOT
from _inputs import build

RESULTS = Path(__file__).with_name("RESULTS.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only cases whose name contains this")
    parser.add_argument("--keep", type=Path, help="build the inputs here and keep them")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="saescope-audit-") as tmp:
        base = args.keep or Path(tmp)
        inputs = build(base)
        built = time.monotonic() - start
        rows = []
        for category, name, fn in _cases.CASES:
            if args.k not in name and args.k not in category:
                continue
            t0 = time.monotonic()
            try:
                outcome, note, res = fn(inputs)
                cmd = _command(res.argv) if res is not None else ""
            except Exception as err:
                outcome, note, cmd = "unclear", f"the case itself failed: {err!r}", ""
                traceback.print_exc()
            rows.append((category, name, outcome, note, cmd, time.monotonic() - t0))
            print(f"[{outcome:9}] {category}: {name}  ({rows[-1][-1]:.1f}s)  {note[:160]}",
                  flush=True)  # fmt: skip
    report = _report(rows, built, time.monotonic() - start)
    print(report)
    if not args.no_write and not args.k:
        RESULTS.write_text(report)
    return 0


def _command(argv: list[str]) -> str:
    argv = [a.replace(str(ROOT), ".") for a in argv]
    if len(argv) > 3 and argv[1].endswith("_inject.py"):
        argv = ["python", "benchmarks/audit/_inject.py", "<fault>", "--", *argv[4:]]
    elif argv[:3] == [sys.executable, "-m", "saescope"]:
        argv = ["saescope", *argv[3:]]
    text = shlex.join(argv)
    return text if len(text) < 400 else text[:400] + "..."


def _report(rows: list[tuple], built: float, total: float) -> str:
    lines = ["# Audit rerun (issue 12)", "",
             f"{len(rows)} cases in {total:.0f} s (inputs built in {built:.0f} s), "
             f"commit-independent script `benchmarks/audit/run_audit.py`.", "",
             "| category | tried | " + " | ".join(OUTCOMES) + " |",
             "|---|---|" + "---|" * len(OUTCOMES)]  # fmt: skip
    categories = list(dict.fromkeys(r[0] for r in rows))
    for category in [*categories, "all"]:
        counts = Counter(r[2] for r in rows if category in (r[0], "all"))
        lines.append(f"| {category} | {sum(counts.values())} | "
                     + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")  # fmt: skip
    for category in categories:
        lines += ["", f"## {category}", "", "| case | outcome | message / check | command |",
                  "|---|---|---|---|"]  # fmt: skip
        for cat, name, outcome, note, cmd, _secs in rows:
            if cat == category:
                cell = note.replace("|", "\\|").replace("\n", " ")[:300]
                shown = cmd.replace("|", "\\|")
                lines.append(f"| {name} | **{outcome}** | {cell} | `{shown}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
