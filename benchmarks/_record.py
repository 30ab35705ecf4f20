"""What every benchmark writes: one JSON line per run, stamped with the date, the machine and the
versions, appended to ``benchmarks/results/<name>.jsonl`` (and printed)."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from saescope import __version__

RESULTS = Path(__file__).parent / "results"


def environment() -> dict[str, Any]:
    """The date, the machine and the versions a result was measured with."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {torch.get_num_threads()} "
        f"threads, {platform.processor() or 'cpu'}",
        "saescope": __version__,
        "torch": torch.__version__,
    }


def append(name: str, *records: dict[str, Any], indent: int | None = None) -> None:
    """Print ``records`` and append them to ``results/<name>.jsonl``."""
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{name}.jsonl").open("a") as f:
        for record in records:
            print(json.dumps(record, indent=indent), flush=True)
            f.write(json.dumps(record) + "\n")
