"""A file-system error under a writing command is one line naming the path (exit 2), with no
traceback and no temporary file left behind: train, index and eval, as the audit tried them."""

import json
import logging

import pytest
from tiny_models import save_tiny_model

from saescope import cli


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk")
    save_tiny_model(root / "model", "gpt2")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"text": f"Bridge {i} spans a river."}) for i in range(200))
    )
    argv = ["capture", "--model", str(root / "model"), "--dtype", "fp32", "--site",
            "layers.1.resid_post", "--tokens", "600", "--out", str(root / "cache"),
            "--dataset", str(corpus), "--context-size", "32", "--shard-rows", "128"]  # fmt: skip
    assert cli.main(argv) == 0
    train = ["train", "--acts", str(root / "cache"), "--out", str(root / "run"), "--width", "64",
             "--k", "4", "--batch-size", "64", "--holdout", "0", "--encoder-dtype", "float32"]  # fmt: skip
    assert cli.main(train) == 0
    return root


@pytest.mark.parametrize("command", ["train", "index", "eval"])
def test_an_out_under_a_regular_file_is_one_line(cache, tmp_path, command, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    out = str(blocker / "out")
    sae = str(cache / "run" / "topk-w64-k4")
    argv = {
        "train": ["train", "--acts", str(cache / "cache"), "--out", out, "--width", "64",
                  "--k", "4", "--batch-size", "64", "--holdout", "0"],
        "index": ["index", "--sae", sae, "--acts", str(cache / "cache"), "--tokens", "256",
                  "--out", str(blocker / "index.db")],
        "eval": ["eval", "--sae", sae, "--acts", str(cache / "cache"), "--out", out,
                 "--tokens", "100000"],
    }[command]  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert cli.main(argv) == 2
    assert str(blocker) in caplog.text and "Traceback" not in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing left behind


def test_a_full_disk_without_a_path_is_one_line(cache, tmp_path, monkeypatch, caplog) -> None:
    import errno
    import importlib

    fit_module = importlib.import_module("saescope.train.fit")  # the package exports fit()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() reports it

    monkeypatch.setattr(fit_module, "save_sae", full)
    argv = ["train", "--acts", str(cache / "cache"), "--out", str(tmp_path / "run"), "--width",
            "64", "--k", "4", "--batch-size", "64", "--holdout", "0"]  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert cli.main(argv) == 2
    assert "No space left on device" in caplog.text and "Traceback" not in caplog.text
