"""The audit's cases, one function each, grouped by issue 12's categories."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch
from _harness import Result, classify, first_bad, sc, spawn
from _inputs import SITE, Inputs, copy, metrics_steps_unique, same_cache, same_index, same_weights

Verdict = tuple[str, str, Result | None]
CASES: list[tuple[str, str, Callable[[Inputs], Verdict]]] = []


def case(category: str, name: str):
    def register(fn: Callable[[Inputs], Verdict]) -> Callable[[Inputs], Verdict]:
        CASES.append((category, name, fn))
        return fn

    return register


def after_steps(steps: list[Result], check: Callable[[], tuple[bool, str]]) -> Verdict:
    """A multi-step case whose steps must all exit 0 and whose result is then checked."""
    bad = first_bad(*steps)
    if bad is not None:
        outcome, note = classify(bad)
        return ("unclear" if outcome == "good" else outcome), f"a step failed: {note}", bad
    ok, note = check()
    return ("good" if ok else "silent"), note, steps[-1]


def refused(res: Result, check: Callable[[], tuple[bool, str]] | None = None) -> Verdict:
    return (*classify(res, check), res)


def kill(target: str, call: int, when: str = "after", **extra: object) -> dict:
    return {"target": target, "call": call, "when": when, "action": "kill", **extra}


def killed(res: Result) -> Result:
    if res.rc != -9:
        raise AssertionError(f"the fault point was not reached (exit {res.rc}): {res.text[-500:]}")
    return res


# ============================================================== capture kill / resume
WRITER = "saescope.activations.writer"

for _name, _point in [
    ("kill after the 2nd shard is recorded, --resume", kill(f"{WRITER}:save_manifest", 3)),
    ("kill after a shard file, before the manifest records it", kill(f"{WRITER}:write_shard", 2)),
    (
        "kill inside a shard write (before its rename), --resume",
        kill("saescope.activations.shards:write_atomic", 3, "before"),
    ),
    (
        "kill at the last manifest write (complete=True), --resume",
        kill(f"{WRITER}:save_manifest", 7, "before"),
    ),
]:

    def _capture_kill(i: Inputs, point: dict = _point) -> Verdict:
        out = i.tmp("cap-kill")
        killed(sc(*i.capture_args(out), inject=[point]))
        resumed = sc(*i.capture_args(out), "--resume")
        return after_steps([resumed], lambda: same_cache(out, i.cache))

    case("capture kill/resume", _name)(_capture_kill)


@case("capture kill/resume", "kill before the first shard, rerun the same command (no --resume)")
def _(i: Inputs) -> Verdict:
    out = i.tmp("cap-retry")
    killed(sc(*i.capture_args(out), inject=[kill(f"{WRITER}:save_manifest", 1)]))
    retry = sc(*i.capture_args(out))
    return after_steps([retry], lambda: same_cache(out, i.cache))


@case("capture kill/resume", "--resume with larger --tokens equals a fresh capture")
def _(i: Inputs) -> Verdict:
    out = copy(i.cache, i.tmp("cap-more"))
    resumed = sc(*i.capture_args(out, 3000), "--resume")
    return after_steps([resumed], lambda: same_cache(out, i.cache_big))


@case("capture kill/resume", "--resume of a complete cache is a no-op")
def _(i: Inputs) -> Verdict:
    out = copy(i.cache, i.tmp("cap-again"))
    return after_steps([sc(*i.capture_args(out), "--resume")], lambda: same_cache(out, i.cache))


for _name, _extra in [
    ("--resume with another --context-size refused", ("--context-size", "16")),
    ("--resume with another --seed refused", ("--seed", "5")),
    ("--resume with another --site refused", ("--site", "layers.0.resid_post")),
    ("--resume with another --store-dtype refused", ("--store-dtype", "float32")),
]:

    def _capture_other(i: Inputs, extra: tuple = _extra) -> Verdict:
        out = copy(i.cache, i.tmp("cap-other"))
        return refused(sc(*i.capture_args(out), *extra, "--resume"))

    case("capture kill/resume", _name)(_capture_other)


# ============================================================== training kill / resume
CKPT = "saescope.train.checkpoint"

for _name, _point in [
    ("kill after the 2nd checkpoint, --resume", kill(f"{CKPT}:save_checkpoint", 2)),
    ("kill after the 1st checkpoint, --resume", kill(f"{CKPT}:save_checkpoint", 1)),
    (
        "kill inside a checkpoint write (before its rename)",
        kill(f"{CKPT}:write_atomic", 3, "before"),
    ),
    ("kill inside the final SAE save", kill("saescope.sae.io:write_atomic", 1, "before")),
]:

    def _train_kill(i: Inputs, point: dict = _point) -> Verdict:
        out = i.tmp("train-kill")
        killed(sc(*i.train_args(out), inject=[point]))
        resumed = sc(*i.train_args(out), "--resume")
        sae = out / i.sae.name

        def check() -> tuple[bool, str]:
            ok, note = same_weights(sae, i.sae)
            ok2, note2 = metrics_steps_unique(sae)
            return ok and ok2, f"{note}; {note2}"

        return after_steps([resumed], check)

    case("training kill/resume", _name)(_train_kill)


@case("training kill/resume", "old two-file checkpoint whose parts disagree refused")
def _(i: Inputs) -> Verdict:
    out = copy(i.run, i.tmp("train-legacy"))
    ck = out / i.sae.name / "checkpoint"
    with safetensors.safe_open(str(ck / "checkpoint.safetensors"), "pt") as f:
        state = json.loads(f.metadata()["saescope.checkpoint"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    safetensors.torch.save_file(tensors, str(ck / "checkpoint.safetensors"))
    (ck / "checkpoint.json").write_text(json.dumps({**state, "step": state["step"] - 5}))
    return refused(sc(*i.train_args(out), "--resume"))


@case("training kill/resume", "truncated checkpoint refused")
def _(i: Inputs) -> Verdict:
    out = copy(i.run, i.tmp("train-trunc"))
    path = out / i.sae.name / "checkpoint" / "checkpoint.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return refused(sc(*i.train_args(out), "--resume"))


@case("training kill/resume", "--resume of a finished run ends where it ended")
def _(i: Inputs) -> Verdict:
    out = copy(i.run, i.tmp("train-again"))
    res = sc(*i.train_args(out), "--resume")
    return refused(res, lambda: same_weights(out / i.sae.name, i.sae))


for _name, _extra in [
    ("--resume with another --lr refused", ("--lr", "0.01")),
    ("--resume with another --seed refused", ("--seed", "7")),
    ("--resume with another --batch-size refused", ("--batch-size", "32")),
    ("--resume with another --dead refused", ("--dead", "none")),
]:

    def _train_other(i: Inputs, extra: tuple = _extra) -> Verdict:
        out = copy(i.run, i.tmp("train-other"))
        return refused(sc(*i.train_args(out), *extra, "--resume"))

    case("training kill/resume", _name)(_train_other)


# ============================================================== index kill / resume
INDEX = "saescope.interpret.index"
CLOCK = {"fast_clock": INDEX}  # a state save at every batch


def index_args(i: Inputs, out: Path, *extra: object) -> list[object]:
    return ["index", "--sae", i.sae, "--acts", i.cache, "--out", out, "--tokens", 1500, *extra]


for _name, _point in [
    ("kill after the 1st state save, --resume", kill(f"{INDEX}:save_state", 1)),
    ("kill after the 2nd state save, --resume", kill(f"{INDEX}:save_state", 2)),
    ("kill inside a state write (before its rename)", kill(f"{INDEX}:write_atomic", 2, "before")),
    ("kill inside the final write_index, --resume", kill(f"{INDEX}:write_index", 1, "before")),
]:

    def _index_kill(i: Inputs, point: dict = _point) -> Verdict:
        out = i.tmp("idx-kill") / "index.db"
        killed(sc(*index_args(i, out), inject=[CLOCK, point]))
        resumed = sc(*index_args(i, out), "--resume")
        return after_steps([resumed], lambda: same_index(out, i.index))

    case("index kill/resume", _name)(_index_kill)


@case("index kill/resume", "rebuild without --resume over an interrupted build refused")
def _(i: Inputs) -> Verdict:
    out = i.tmp("idx-partial") / "index.db"
    killed(sc(*index_args(i, out), inject=[CLOCK, kill(f"{INDEX}:save_state", 1)]))
    return refused(sc(*index_args(i, out)))


@case("index kill/resume", "--resume with another --top refused")
def _(i: Inputs) -> Verdict:
    out = i.tmp("idx-other") / "index.db"
    killed(sc(*index_args(i, out), inject=[CLOCK, kill(f"{INDEX}:save_state", 1)]))
    return refused(sc(*index_args(i, out, "--top", "5"), "--resume"))


# ============================================================== concurrency and disk


def _pause(target: str, marker: Path, call: int = 1) -> dict:
    return {"target": target, "call": call, "when": "after", "action": "pause",
            "marker": str(marker)}  # fmt: skip


def _meet(first: list[object], inject: list[dict], marker: Path, second: list[object]) -> Verdict:
    """Start ``first`` and hold it at a point inside its lock, run ``second``, then kill it."""
    proc = spawn(*first, inject=inject)
    try:
        for _ in range(600):  # waiting for a marker file, not for a guessed moment
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        if not marker.exists():
            return "unclear", "the first command never reached its pause point", None
        return refused(sc(*second))
    finally:
        proc.kill()
        proc.wait()


@case("concurrency and disk", "two captures into one --out at once: second refused")
def _(i: Inputs) -> Verdict:
    out, marker = i.tmp("two-cap"), i.tmp("marker")
    args = i.capture_args(out)
    return _meet(args, [_pause(f"{WRITER}:save_manifest", marker, 2)], marker, args)


@case("concurrency and disk", "two train --resume on one run at once: second refused")
def _(i: Inputs) -> Verdict:
    out, marker = copy(i.run, i.tmp("two-train")), i.tmp("marker")
    args = [*i.train_args(out), "--resume"]
    return _meet(args, [_pause(f"{CKPT}:load_checkpoint", marker)], marker, args)


@case("concurrency and disk", "two index builds of one file at once: second refused")
def _(i: Inputs) -> Verdict:
    out, marker = i.tmp("two-idx") / "index.db", i.tmp("marker")
    args = index_args(i, out)
    return _meet(args, [CLOCK, _pause(f"{INDEX}:save_state", marker)], marker, args)


def _tiny_disk(i: Inputs) -> Path | None:
    where = i.tmp("tmpfs")
    where.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                          capture_output=True, check=False)  # fmt: skip
    return where if done.returncode == 0 else None


def _full_disk(i: Inputs, make: Callable[[Path], list[object]]) -> Verdict:
    disk = _tiny_disk(i)
    if disk is None:
        return "unclear", "could not simulate a full disk (mount -t tmpfs refused)", None
    try:
        res = sc(*make(disk / "out"))
        left = [p.name for p in disk.rglob("*") if ".tmp" in p.name]
        outcome, note = classify(res)
        if left and outcome == "good":
            outcome, note = "unclear", f"{note}; left temporary files {left}"
        return outcome, note, res
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@case("concurrency and disk", "capture onto a full disk (64 KiB tmpfs)")
def _(i: Inputs) -> Verdict:
    return _full_disk(i, lambda out: i.capture_args(out))


@case("concurrency and disk", "train onto a full disk (64 KiB tmpfs)")
def _(i: Inputs) -> Verdict:
    return _full_disk(i, lambda out: [*i.train_args(out)[:-2], "--width", "1024"])


def _not_writable(i: Inputs) -> Path:
    blocker = i.tmp("file")
    blocker.write_text("a regular file, so nothing can be created under it\n")
    return blocker / "out"


@case("concurrency and disk", "capture --out not writable (under a regular file)")
def _(i: Inputs) -> Verdict:
    return refused(sc(*i.capture_args(_not_writable(i))))


@case("concurrency and disk", "train --out not writable")
def _(i: Inputs) -> Verdict:
    return refused(sc(*i.train_args(_not_writable(i))))


@case("concurrency and disk", "index --out not writable")
def _(i: Inputs) -> Verdict:
    return refused(sc(*index_args(i, _not_writable(i) / "index.db")))


@case("concurrency and disk", "eval --out not writable")
def _(i: Inputs) -> Verdict:
    return refused(sc("eval", "--sae", i.sae, "--acts", i.cache, "--out", _not_writable(i),
                      "--tokens", 500))  # fmt: skip


def nan_free_json(path: Path) -> tuple[bool, str]:
    text = path.read_text()
    try:
        json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError as err:
        return False, f"{path.name} is not strict JSON ({err})"
    return True, f"{path.name} strict JSON"


__all__ = ["CASES", "SITE", "math", "nan_free_json", "shutil", "torch"]
