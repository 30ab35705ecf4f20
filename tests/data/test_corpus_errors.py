import json

import pytest

from saescope.data import load_corpus
from saescope.errors import SaescopeError


def test_latin1_text_names_the_file_and_the_encoding(tmp_path) -> None:
    path = tmp_path / "old.txt"
    path.write_bytes("Caf\u00e9 cr\u00e8me".encode("latin-1"))
    with pytest.raises(SaescopeError, match=r"old.txt is not UTF-8 \(byte 0xe9 at offset 3\)"):
        load_corpus(path)


def test_jsonl_text_that_is_not_a_string_is_refused(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": None}) + "\n")
    with pytest.raises(SaescopeError, match=r"a.jsonl:2: field 'text' is null, expected a string"):
        load_corpus(path)
