"""`saescope train --arch matryoshka` then `saescope eval --probing --absorption` on a tiny model."""

import json

from tiny_models import save_tiny_model

from saescope import cli
from saescope.sae import load_sae


def test_matryoshka_trains_and_eval_probes_from_the_command_line(tmp_path, capsys) -> None:
    model = tmp_path / "tiny"
    save_tiny_model(model, "gpt2")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"text": f"Bridge {i} spans a river."}) for i in range(80))
    )
    run = tmp_path / "run"
    train = [
        "train",
        "--model",
        str(model),
        "--site",
        "layers.1.resid_post",
        "--dataset",
        str(corpus),
        "--tokens",
        "512",
        "--out",
        str(run),
        "--arch",
        "matryoshka",
        "--width",
        "64",
        "--k",
        "4",
        "--batch-size",
        "64",
        "--holdout",
        "0",
        "--context-size",
        "32",
        "--encoder-dtype",
        "float32",
    ]
    assert cli.main(train) == 0
    sae = load_sae(run / "matryoshka-w64-k4")
    assert sae.cfg.architecture == "matryoshka" and sae.cfg.prefix_widths == (1, 4, 16, 64)
    capsys.readouterr()
    out = tmp_path / "eval"
    argv = [
        "eval",
        "--sae",
        str(run / "matryoshka-w64-k4"),
        "--out",
        str(out),
        "--model",
        str(model),
        "--loss-tokens",
        "64",
        "--tokens",
        "256",
        "--context-size",
        "32",
        "--dataset",
        str(corpus),
        "--no-ablations",
        "--probing",
    ]
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())["saes"]["matryoshka-w64-k4"]
    for task in ("source", "quote"):
        probe = metrics["probing"][task]
        assert set(probe["sparse"]) == {"1", "2", "5", "20"}
        assert 0 <= probe["raw"] <= 1
    assert metrics["absorption"] is None
    assert "k-sparse probing" in (out / "report.html").read_text()
    # The tiny tokenizer has no single-token words with a decoded leading space: said, exit 2.
    assert cli.main([*argv[:-1], "--absorption", "--out", str(tmp_path / "eval2")]) == 2
