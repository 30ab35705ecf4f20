"""Bad files and bad arguments: each makes one broken input on disk or on the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch
from _cases import Verdict, case, index_args, nan_free_json, refused
from _harness import sc
from _inputs import Inputs, copy

# ============================================================== bad files: SAE directories


def _sae_cfg(edit: Callable[[dict], object]) -> Callable[[Inputs], Verdict]:
    def run(i: Inputs) -> Verdict:
        sae = copy(i.sae, i.tmp("sae"))
        cfg = json.loads((sae / "cfg.json").read_text())
        new = edit(cfg)
        text = new if isinstance(new, str) else json.dumps(cfg if new is None else new)
        (sae / "cfg.json").write_text(text)
        return _eval(i, sae)

    return run


def _eval(i: Inputs, sae: Path) -> Verdict:
    out = i.tmp("report")
    res = sc("eval", "--sae", sae, "--acts", i.cache, "--out", out, "--tokens", 500)
    return refused(res)


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda cfg: cfg.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda cfg: cfg.pop(key) and None


for _name, _edit in [
    ("cfg.json d_in a string", _set("d_in", "64")),
    ("cfg.json d_in a float (64.9)", _set("d_in", 64.9)),
    ("cfg.json d_in missing", _drop("d_in")),
    ("cfg.json d_sae missing", _drop("d_sae")),
    ("cfg.json k a string", _set("k", "8")),
    ("cfg.json k missing", _drop("k")),
    ("cfg.json k 0", _set("k", 0)),
    ("cfg.json k > d_sae", _set("k", 1000)),
    (
        "cfg.json architecture missing",
        lambda c: [c.pop(k, None) for k in ("architecture", "saescope_architecture")] and None,
    ),
    (
        "cfg.json architecture unknown",
        lambda c: c.update(architecture="nonsense", saescope_architecture="nonsense"),
    ),
    ("cfg.json dtype float33", _set("dtype", "float33")),
    ("cfg.json d_in disagrees with the weights", _set("d_in", 32)),
    ("cfg.json a list at top level", lambda c: "[1, 2, 3]"),
    ("cfg.json not JSON", lambda c: "d_in = 64\n"),
    ("cfg.json truncated", lambda c: json.dumps(c)[:40]),
    ("cfg.json empty", lambda c: ""),
]:
    case("bad files", _name)(_sae_cfg(_edit))


def _sae_weights(edit: Callable[[Path], None]) -> Callable[[Inputs], Verdict]:
    def run(i: Inputs) -> Verdict:
        sae = copy(i.sae, i.tmp("sae"))
        edit(sae / "sae_weights.safetensors")
        return _eval(i, sae)

    return run


def _tensors(fn: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        w = safetensors.torch.load_file(str(path))
        fn(w)
        safetensors.torch.save_file(w, str(path))

    return edit


def _nan(key: str, value: float) -> Callable[[dict], None]:
    return lambda w: w[key].view(-1).__setitem__(3, value)


for _name, _edit in [
    ("weights file missing", lambda p: p.unlink()),
    ("weights file truncated", lambda p: p.write_bytes(p.read_bytes()[:1000])),
    ("weights file random bytes", lambda p: p.write_bytes(b"\x80\x04garbage" * 100)),
    (
        "weights W_enc wrong shape",
        _tensors(lambda w: w.__setitem__("W_enc", w["W_enc"][:, :64].contiguous())),
    ),
    (
        "weights W_dec transposed",
        _tensors(lambda w: w.__setitem__("W_dec", w["W_dec"].t().contiguous())),
    ),
    ("weights b_dec missing", _tensors(lambda w: w.pop("b_dec"))),
    ("weights NaN in W_dec", _tensors(_nan("W_dec", float("nan")))),
    ("weights inf in b_enc", _tensors(_nan("b_enc", float("inf")))),
]:
    case("bad files", _name)(_sae_weights(_edit))


@case("bad files", "eval --sae of another d_in than the cache")
def _(i: Inputs) -> Verdict:
    sae = copy(i.sae, i.tmp("sae32"))
    w = safetensors.torch.load_file(str(sae / "sae_weights.safetensors"))
    w = {"W_enc": w["W_enc"][:32].contiguous(), "b_enc": w["b_enc"],
         "W_dec": w["W_dec"][:, :32].contiguous(), "b_dec": w["b_dec"][:32].contiguous()}  # fmt: skip
    safetensors.torch.save_file(w, str(sae / "sae_weights.safetensors"))
    cfg = json.loads((sae / "cfg.json").read_text())
    (sae / "cfg.json").write_text(json.dumps({**cfg, "d_in": 32}))
    return _eval(i, sae)


# ============================================================== bad files: caches


def _manifest(edit: Callable[[dict], object], command: str = "inspect") -> Callable:
    def run(i: Inputs) -> Verdict:
        cache = copy(i.cache, i.tmp("cache"))
        m = json.loads((cache / "manifest.json").read_text())
        new = edit(m)
        text = new if isinstance(new, str) else json.dumps(m if new is None else new)
        (cache / "manifest.json").write_text(text)
        return _use_cache(i, cache, command)

    return run


def _use_cache(i: Inputs, cache: Path, command: str) -> Verdict:
    if command == "inspect":
        return refused(sc("inspect", "--verify", cache))
    if command == "train":
        out = i.tmp("run")
        return refused(sc("train", "--acts", cache, "--out", out, "--width", 64, "--k", 4,
                          "--batch-size", 64, "--holdout", 500))  # fmt: skip
    if command == "eval":
        out = i.tmp("report")
        res = sc("eval", "--sae", i.sae, "--acts", cache, "--out", out, "--tokens", 1500)
        return refused(res)
    if command == "index":
        out = i.tmp("idx") / "index.db"
        return refused(sc("index", "--sae", i.sae, "--acts", cache, "--out", out))
    raise ValueError(command)


def _shard0(key: str, value: object) -> Callable[[dict], None]:
    return lambda m: m["shards"][0].__setitem__(key, value)


def _rows_by(delta: int) -> Callable[[dict], None]:
    return lambda m: m["shards"][1].__setitem__("rows", m["shards"][1]["rows"] + delta)


for _name, _edit, _cmd in [
    ("manifest a list", lambda m: [m], "inspect"),
    ("manifest not JSON", lambda m: "{not json", "inspect"),
    ("manifest truncated", lambda m: json.dumps(m)[:200], "inspect"),
    ("manifest old format_version", lambda m: m.update(format_version=0), "inspect"),
    (
        "manifest site width wrong (train)",
        lambda m: m.update(sites={"layers.1.resid_post": 32}),
        "train",
    ),
    ("manifest shard rows a string", _shard0("rows", "988"), "inspect"),
    ("manifest rows overstated (inspect --verify)", _rows_by(50), "inspect"),
    ("manifest rows understated (inspect --verify)", _rows_by(-50), "inspect"),
    ("manifest rows overstated (train)", _rows_by(50), "train"),
    ("manifest rows understated (eval)", _rows_by(-50), "eval"),
    ("manifest sha256 wrong (inspect --verify)", _shard0("sha256", "0" * 64), "inspect"),
]:
    case("bad files", _name)(_manifest(_edit, _cmd))


def _shard_file(edit: Callable[[Path], None], command: str) -> Callable[[Inputs], Verdict]:
    def run(i: Inputs) -> Verdict:
        cache = copy(i.cache, i.tmp("cache"))
        edit(cache / "shards" / "r00-00001.safetensors")
        return _use_cache(i, cache, command)

    return run


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for at in range(len(data) - 400, len(data) - 300):
        data[at] ^= 0x55
    path.write_bytes(bytes(data))


for _name, _edit, _cmd in [
    ("shard missing (train)", lambda p: p.unlink(), "train"),
    ("shard truncated (train)", lambda p: p.write_bytes(p.read_bytes()[:5000]), "train"),
    ("shard corrupt bytes, same size (inspect --verify)", _flip, "inspect"),
    ("shard corrupt bytes, same size (eval)", _flip, "eval"),
]:
    case("bad files", _name)(_shard_file(_edit, _cmd))


def _nan_row(i: Inputs) -> Path:
    """A cache with one NaN row in shard 1, its manifest's bytes and sha256 made to agree."""
    import hashlib

    cache = copy(i.cache, i.tmp("cache-nan"))
    path = cache / "shards" / "r00-00001.safetensors"
    t = safetensors.torch.load_file(str(path))
    key = next(k for k in t if k.startswith("acts."))
    t[key][7] = float("nan")
    data = safetensors.torch.save(t)
    path.write_bytes(data)
    m = json.loads((cache / "manifest.json").read_text())
    m["shards"][1].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (cache / "manifest.json").write_text(json.dumps(m))
    return cache


for _cmd in ("eval", "index", "train"):

    def _nan_case(i: Inputs, command: str = _cmd) -> Verdict:
        return _use_cache(i, _nan_row(i), command)

    case("bad files", f"one NaN row in a shard ({_cmd})")(_nan_case)


# ============================================================== bad files: corpora, models, index


def _corpus(name: str, data: bytes, *extra: object) -> Callable[[Inputs], Verdict]:
    def run(i: Inputs) -> Verdict:
        path = i.tmp("corpus") / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        args = i.capture_args(i.tmp("cache"), 300)
        args[args.index("--dataset") + 1] = path
        return refused(sc(*args, *extra))

    return run


_LINES = [json.dumps({"text": "Bridges span rivers and straits. " * 20})] * 20
for _name, _file, _data, _extra in [
    ("Latin-1 .txt corpus", "latin.txt", "Caf\xe9 cr\xe8me au lait. ".encode("latin-1") * 200, ()),
    ("empty .txt corpus", "empty.txt", b"", ()),
    ("empty .jsonl corpus", "empty.jsonl", b"", ()),
    (
        "jsonl without the text field",
        "other.jsonl",
        b"\n".join(json.dumps({"body": "x " * 300}).encode() for _ in range(20)),
        (),
    ),
    ("jsonl with a non-JSON line", "broken.jsonl", "\n".join([*_LINES, "{oops"]).encode(), ()),
    ("jsonl with a top-level list line", "list.jsonl", "\n".join([*_LINES, "[1]"]).encode(), ()),
]:
    case("bad files", _name)(_corpus(_file, _data, *_extra))


@case("bad files", 'jsonl row with "text": null')
def _(i: Inputs) -> Verdict:
    path = i.tmp("corpus") / "null.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join([json.dumps({"text": None}), *_LINES]))
    out = i.tmp("cache")
    args = i.capture_args(out, 300)
    args[args.index("--dataset") + 1] = path
    res = sc(*args)

    def check() -> tuple[bool, str]:
        from transformers import AutoTokenizer

        from saescope.activations import open_activations

        cache = open_activations(out)
        ids = cache.provenance(list(range(min(len(cache), 40))))["tokens"].tolist()
        text = AutoTokenizer.from_pretrained(str(i.model)).decode(ids)
        return "None" not in text, f"first rows decode to {text[:60]!r}"

    return refused(res, check)


@case("bad files", "--dataset path that does not exist")
def _(i: Inputs) -> Verdict:
    args = i.capture_args(i.tmp("cache"), 300)
    args[args.index("--dataset") + 1] = i.tmp("nothing.jsonl")
    return refused(sc(*args))


def _model_dir(make: Callable[[Path, Inputs], None]) -> Callable[[Inputs], Verdict]:
    def run(i: Inputs) -> Verdict:
        d = i.tmp("model")
        make(d, i)
        return refused(sc("predict", "--model", d, "--prompt", "The bridge"))

    return run


def _pickled(d: Path, i: Inputs) -> None:
    copy(i.model, d)
    w = safetensors.torch.load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    torch.save(w, d / "pytorch_model.bin")


for _name, _make in [
    ("model dir with only a pickled pytorch_model.bin", _pickled),
    (
        "model dir without config.json",
        lambda d, i: (copy(i.model, d), (d / "config.json").unlink()),
    ),
    ("model dir empty", lambda d, i: d.mkdir(parents=True)),
    (
        "model dir weights truncated",
        lambda d, i: (copy(i.model, d), (d / "model.safetensors").write_bytes(b"12345678")),
    ),
]:
    case("bad files", _name)(_model_dir(_make))


def _index_file(edit: Callable[[Path], None]) -> Callable[[Inputs], Verdict]:
    def run(i: Inputs) -> Verdict:
        path = copy(i.index, i.tmp("idx") / "index.db")
        edit(path)
        return refused(sc("show", "3", "--index", path))

    return run


def _old_format(path: Path) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("update meta set value = '0' where key = 'format'")
    con.execute("drop table peaks")
    con.commit()
    con.close()


for _name, _edit in [
    ("index file random bytes", lambda p: p.write_bytes(b"not sqlite at all " * 300)),
    ("index file truncated", lambda p: p.write_bytes(p.read_bytes()[:8192])),
    ("index old format (format 0, a table missing)", _old_format),
    ("index file empty", lambda p: p.write_bytes(b"")),
]:
    case("bad files", _name)(_index_file(_edit))


# ============================================================== bad arguments


def _bad(category: str, name: str, make: Callable[[Inputs], list[object]], timeout: float = 60,
         check: Callable[[Inputs, object], tuple[bool, str]] | None = None) -> None:  # fmt: skip
    def run(i: Inputs) -> Verdict:
        res = sc(*make(i), timeout=timeout)
        return refused(res, (lambda: check(i, res)) if check else None)

    case(category, name)(run)


A = "bad arguments"
for _flag, _value in [("--lr", "-1"), ("--lr", "nan"), ("--lr", "0"), ("--lr", "inf"),
                      ("--k", "0"), ("--k", "200"), ("--width", "0"), ("--width", "-5"),
                      ("--tokens", "0"), ("--batch-size", "0"), ("--arch", "nonsense"),
                      ("--epochs", "0"), ("--holdout", "-1"), ("--holdout", "100000"),
                      ("--site", "layers.1.nonsense"),
                      ("--site", "layers.0.resid_post"), ("--beta1", "2"),
                      ("--device", "cuda")]:  # fmt: skip
    _bad(A, f"train {_flag} {_value}",
         lambda i, f=_flag, v=_value: [*i.train_args(i.tmp("run")), f, v])  # fmt: skip

for _flag, _value in [("--tokens", "0"), ("--tokens", "-1"), ("--batch-size", "0"),
                      ("--shard-rows", "0"), ("--context-size", "0"), ("--context-size", "1"),
                      ("--context-size", "100000"), ("--device", "cuda"),
                      ("--site", "layers.99.resid_post"), ("--site", "layers.1.nonsense"),
                      ("--site", "garbage"), ("--dtype", "float33"),
                      ("--store-dtype", "int8")]:  # fmt: skip
    _bad(A, f"capture {_flag} {_value}",
         lambda i, f=_flag, v=_value: [*i.capture_args(i.tmp("cache"), 300), f, v])  # fmt: skip


def _into_non_cache(i: Inputs) -> list[object]:
    out = i.tmp("notcache")
    out.mkdir(parents=True)
    (out / "thesis.tex").write_text("precious")
    return i.capture_args(out, 300)


_bad(A, "capture --out an existing non-cache directory", _into_non_cache)

_bad(A, "eval --tokens 0", lambda i: ["eval", "--sae", i.sae, "--acts", i.cache, "--out",
                                      i.tmp("rep"), "--tokens", 0])  # fmt: skip
_bad(A, "eval --sae that does not exist", lambda i: ["eval", "--sae", i.tmp("nosae"), "--acts",
                                                     i.cache, "--out", i.tmp("rep")])  # fmt: skip
for _flag, _value in [("--tokens", "0"), ("--top", "0"), ("--top", "-1"), ("--samples", "-1"),
                      ("--window", "a,b"), ("--site", "layers.2.resid_post")]:  # fmt: skip
    _bad(A, f"index {_flag} {_value}",
         lambda i, f=_flag, v=_value: [*index_args(i, i.tmp("idx") / "i.db"), f, v])  # fmt: skip

for _feature in ("99999", "-1", "abc"):
    _bad(A, f"show unknown feature {_feature}",
         lambda i, f=_feature: ["show", f, "--index", i.index])  # fmt: skip
_bad(A, "show --index that does not exist", lambda i: ["show", "3", "--index", i.tmp("no.db")])

PROMPT = "The bridge spans the river"
LONG = "Bridges span rivers. " * 5000  # 100k characters


def _steer(*extra: object) -> Callable[[Inputs], list[object]]:
    return lambda i: ["steer", "--model", i.model, "--sae", i.sae, "--prompt", PROMPT,
                      "--max-new", 4, *extra]  # fmt: skip


for _extra in [("--clamp", "5=nan"), ("--clamp", "5=inf"), ("--clamp", "5=abc"),
               ("--clamp", "5"), ("--clamp", "99999=5"), ("--ablate", "99999"),
               ("--sweep", "5="), ("--sweep", "5=a,b"), ("--clamp", "5=3", "--positions", "9999"),
               ("--clamp", "5=3", "--positions", "bogus"), ("--max-new", "-1"),
               ("--samples", "0"), ("--clamp", "5=3", "--sample", "--temperature", "-1"),
               ("--neuron", "layers.1.mlp_act:99999=1"), ("--neuron", "nonsense"),
               ("--top", "0"), ("--prompt", "")]:  # fmt: skip
    _bad(A, "steer " + " ".join(_extra), _steer(*_extra))
_bad(A, "steer a 100k-character prompt", _steer("--clamp", "5=3", "--prompt", LONG), timeout=120)

_feat = ["features", "--sae"]
for _extra in [("--prompt", ""), ("--top", "0"), ("--top", "-1"), ("--prompt", LONG)]:
    _bad(A, "features " + " ".join(x[:20] for x in _extra),
         lambda i, e=_extra: ["features", "--sae", i.sae, "--model", i.model, "--prompt", PROMPT,
                              *e], timeout=120)  # fmt: skip


def _lists_at_most_vocab(i: Inputs, res: object) -> tuple[bool, str]:
    rows = [x for x in res.out.splitlines() if x.startswith("│")]  # type: ignore[attr-defined]
    bad = any(t in res.out.lower() for t in ("nan", "inf"))  # type: ignore[attr-defined]
    return (0 < len(rows) <= 300 and not bad), f"listed {len(rows)} tokens (vocabulary 300)"


for _extra, _check in [(("--prompt", ""), None), (("--top", "0"), None), (("--top", "-1"), None),
                       (("--top", "100000000"), _lists_at_most_vocab),
                       (("--continue", "-1"), None),
                       (("--sample", "--temperature", "nan"), None),
                       (("--device", "cuda"), None), (("--prompt", LONG), None)]:  # fmt: skip
    _bad(A, "predict " + " ".join(x[:20] for x in _extra),
         lambda i, e=_extra: ["predict", "--model", i.model, "--prompt", PROMPT, *e],
         timeout=120, check=_check)  # fmt: skip

for _extra in [("--prompt", ""), ("--targets", ""), ("--targets", ",,"), ("--position", "9999"),
               ("--top", "0"), ("--prompt", LONG)]:  # fmt: skip
    _bad(A, "lens " + " ".join(repr(x[:20]) if not x else x[:20] for x in _extra),
         lambda i, e=_extra: ["lens", "--model", i.model, "--prompt", PROMPT, *e],
         timeout=120)  # fmt: skip

_bad(A, "sites --model that does not exist", lambda i: ["sites", "--model", i.tmp("nomodel")])


@case("bad files", "eval metrics.json is strict JSON")
def _(i: Inputs) -> Verdict:
    out = i.tmp("report")
    res = sc("eval", "--sae", i.sae, "--acts", i.cache, "--out", out, "--tokens", 1500)
    return refused(res, lambda: nan_free_json(out / "metrics.json"))
