import json

import pytest

from saescope.data import load_corpus
from saescope.errors import SaescopeError


def test_txt_documents_are_blank_line_separated(tmp_path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("first doc\nstill first\n\n\nsecond doc\n  \nthird")
    assert load_corpus(path).documents == ["first doc\nstill first", "second doc", "third"]


def test_jsonl_reads_the_text_field_and_names_missing_ones(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"body": "one"}) + "\n\n" + json.dumps({"body": "two"}) + "\n")
    corpus = load_corpus(path, text_field="body")
    assert corpus.documents == ["one", "two"] and corpus.text_field == "body"
    with pytest.raises(SaescopeError, match=r"no field 'text' \(found \['body'\]\).*--text-field"):
        load_corpus(path)


def test_parquet_and_saved_datasets(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["alpha", "beta", "gamma"], "n": [1, 2, 3]})
    ds.to_parquet(tmp_path / "a.parquet")
    ds.save_to_disk(tmp_path / "saved")
    assert load_corpus(tmp_path / "a.parquet").documents == ["alpha", "beta", "gamma"]
    assert load_corpus(tmp_path / "saved").documents == ["alpha", "beta", "gamma"]
    with pytest.raises(SaescopeError, match="columns"):
        load_corpus(tmp_path / "saved", text_field="body")


def test_directory_of_files_reads_them_in_order(tmp_path) -> None:
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "a.txt").write_text("ay")
    assert load_corpus(tmp_path).documents == ["ay", "bee"]


def test_empty_and_missing_corpora_are_clear_errors(tmp_path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    with pytest.raises(SaescopeError, match="no documents"):
        load_corpus(tmp_path / "empty.txt")
    with pytest.raises(SaescopeError, match="does not exist"):
        load_corpus(tmp_path / "nope.jsonl")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(SaescopeError, match="unsupported"):
        load_corpus(tmp_path / "x.csv")


def test_default_corpus_is_wikipedia_plus_gutenberg() -> None:
    corpus = load_corpus()
    assert corpus.name == "default"
    assert len(corpus) > 13_000
    text = "\n".join(corpus.documents)
    assert "Sherlock Holmes" in text and "2001: A Space Odyssey" in text
    assert "PROJECT GUTENBERG EBOOK" not in text.upper()  # headers and licence are cut
