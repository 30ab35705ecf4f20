import argparse
import json
import shutil
from typing import get_args

import pytest
import torch
from tiny_models import save_tiny_model

from saescope import cli
from saescope.activations import open_activations
from saescope.data import ContextConfig
from saescope.errors import SaescopeError
from saescope.jobs import train_saes
from saescope.models import load_model
from saescope.sae import ARCHITECTURES, load_sae
from saescope.train import TrainConfig
from saescope.train.config import DeadMethod
from saescope.train.loggers import TRACKERS

SUBCOMMANDS = [
    "quickstart",
    "walkthrough",
    "capture",
    "train",
    "eval",
    "predict",
    "lens",
    "neurons",
    "inspect",
    "sites",
    "index",
    "features",
    "show",
    "search",
    "dashboard",
    "families",
    "steer",
]


@pytest.mark.parametrize("command", [[], *([c] for c in SUBCOMMANDS)])
def test_every_command_explains_itself(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: saescope" in capsys.readouterr().out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-gpt2")
    save_tiny_model(path, "gpt2")
    return path


def test_load_model_from_a_local_directory(model_dir) -> None:
    model = load_model(str(model_dir), dtype="fp32", device="cpu")
    assert model.family.name == "gpt2" and model.dtype == torch.float32
    assert model.tokenizer.bos_token_id == 2


def test_capture_from_the_command_line(model_dir, tmp_path, capsys) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"body": f"Bridge number {i} spans a river."}) for i in range(200))
    )
    out = tmp_path / "cache"
    argv = [
        "capture",
        "--model",
        str(model_dir),
        "--dtype",
        "fp32",
        "--site",
        "blocks.1.hook_resid_post",
        "--site",
        "layers.0.mlp_act",
        "--tokens",
        "500",
        "--out",
        str(out),
        "--dataset",
        str(corpus),
        "--text-field",
        "body",
        "--context-size",
        "32",
        "--shard-rows",
        "128",
        "--batch-size",
        "2",
    ]
    assert cli.main(argv) == 0
    cache = open_activations(out)
    assert len(cache) == 500 and cache.sites == ["layers.0.mlp_act", "layers.1.resid_post"]
    assert "500 rows of 500 asked" in capsys.readouterr().out
    assert cli.main(argv) == 2  # exists: refused without --resume, cache untouched
    assert cli.main([*argv, "--resume"]) == 0
    assert cli.main(["inspect", str(out), "--verify"]) == 0
    assert cli.main(["sites", "--model", str(model_dir)]) == 0
    assert "mlp_act" in capsys.readouterr().out

    run = tmp_path / "run"
    train = [
        "train",
        "--acts",
        str(out),
        "--site",
        "layers.1.resid_post",
        "--out",
        str(run),
        "--arch",
        "topk,relu",
        "--width",
        "64,128",
        "--k",
        "4",
        "--batch-size",
        "64",
        "--holdout",
        "128",
        "--epochs",
        "3",
        "--encoder-dtype",
        "float32",
    ]
    assert cli.main(train) == 0
    printed = capsys.readouterr().out
    names = ["topk-w64-k4", "topk-w128-k4", "relu-w64", "relu-w128"]
    assert all(f"{name}: saved to" in printed for name in names) and "held-out FVU" in printed
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) == set(names) and summary["topk-w64-k4"]["heldout"]["tokens"] >= 128
    sae = load_sae(run / "topk-w64-k4")
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post" and sae.cfg.d_in == 64
    assert cli.main(train) == 2  # a finished run is not overwritten without --resume

    report = tmp_path / "report"
    saes = [str(run / "topk-w64-k4"), str(run / "relu-w64")]
    assert (
        cli.main(
            [
                "eval",
                "--sae",
                *saes,
                "--acts",
                str(out),
                "--model",
                str(model_dir),
                "--dtype",
                "fp32",
                "--tokens",
                "128",
                "--loss-tokens",
                "64",
                "--context-size",
                "32",
                "--out",
                str(report),
            ]
        )
        == 0
    )
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["format"] == "saescope.eval/1" and set(metrics["saes"]) == {
        "topk-w64-k4",
        "relu-w64",
    }
    spliced = metrics["saes"]["topk-w64-k4"]["spliced"]
    assert spliced["ce_clean"] > 0 and spliced["loss_recovered"] is not None
    assert "data:image/png;base64" in (report / "report.html").read_text()

    all_rows = [
        "eval",
        "--sae",
        saes[0],
        "--acts",
        str(out),
        "--tokens",
        "10000000",
        "--out",
        str(tmp_path / "all"),
    ]
    assert cli.main(all_rows) == 0  # more rows asked than cached: the whole cache
    assert (
        json.loads((tmp_path / "all" / "metrics.json").read_text())["context"][
            "reconstruction tokens"
        ]
        == 500
    )

    other = tmp_path / "other-sae"
    shutil.copytree(run / "topk-w64-k4", other)
    cfg = json.loads((other / "cfg.json").read_text())
    cfg["metadata"]["model_name"] = "gpt2-xl"
    (other / "cfg.json").write_text(json.dumps(cfg))
    assert cli.main(["eval", "--sae", str(other), "--acts", str(out), "--out", str(report)]) == 2


def test_predict_and_lens_from_the_command_line(model_dir, tmp_path, capsys) -> None:
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(model_dir),
                "--prompt",
                "Bridges span",
                "--continue",
                "4",
                "--top",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "next token after" in out and out.splitlines()[-1].startswith("Bridges span")
    plot = tmp_path / "lens.png"
    argv = ["lens", "--model", str(model_dir), "--prompt", "Bridges span", "--plot", str(plot)]
    assert cli.main(argv) == 0
    assert "layers.2.mlp" in capsys.readouterr().out and plot.stat().st_size > 1000
    assert cli.main([*argv[:5], "--targets", "Bridges span rivers"]) == 2  # not one token


def test_bad_input_exits_2_with_a_message(model_dir, tmp_path, caplog) -> None:
    argv = [
        "capture",
        "--model",
        str(model_dir),
        "--site",
        "layers.9.resid_post",
        "--tokens",
        "10",
        "--out",
        str(tmp_path / "x"),
        "--dataset",
        str(tmp_path / "missing.txt"),
    ]
    assert cli.main(argv) == 2
    assert "does not exist" in caplog.text
    (tmp_path / "c.txt").write_text("some text " * 100)
    argv[-1] = str(tmp_path / "c.txt")
    assert cli.main(argv) == 2
    assert "has 3 layers" in caplog.text
    assert cli.main(["inspect", str(tmp_path)]) == 2
    assert "not an activation cache" in caplog.text
    assert cli.main(["sites", "--model", str(tmp_path / "nowhere" / "model")]) == 2


def _train_defaults() -> argparse.Namespace:
    return cli.build_parser().parse_args(["train", "--out", "x"])


def test_train_defaults_are_the_configs_defaults() -> None:
    args, cfg = _train_defaults(), TrainConfig(tokens=4096)
    assert args.batch_size == cfg.batch_size and args.seed == cfg.seed
    assert args.normalize == cfg.normalize and args.decoder_norm == cfg.decoder_norm
    assert args.checkpoint_every == cfg.checkpoint_every
    assert args.lr == cfg.optim.lr and args.beta1 == cfg.optim.betas[0]
    assert args.l1 == cfg.sparsity.l1_coef and args.l0_coef == cfg.sparsity.l0_coef
    assert args.dead == cfg.dead.method and args.dead_window == cfg.dead.window_tokens
    assert args.context_size == ContextConfig().context_size
    assert args.model is None and args.encoder_dtype == "auto"


def test_train_choices_come_from_the_configs_and_registries(capsys) -> None:
    parser = cli.build_parser()
    actions = {
        a.dest: a
        for a in parser._subparsers._group_actions[0].choices["train"]._actions  # type: ignore[union-attr]
    }
    assert actions["dead"].choices == list(get_args(DeadMethod))
    assert actions["log_to"].choices == list(TRACKERS)
    assert actions["encoder_dtype"].choices == ["auto", "float32", "bfloat16"]
    assert actions["decoder_norm"].choices == ["unit", "at_most_one"]
    assert "relu / gated: L1 penalty" in actions["l1"].help  # the field's docstring
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["train", "--out", "x", "--arch", "topk,nosuch"])
    assert exit_info.value.code == 2
    assert "unknown architecture(s) nosuch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--out", "x", "--help"])
    shown = capsys.readouterr().out
    assert all(name in shown for name in ARCHITECTURES)


def test_train_refuses_what_the_library_cannot_resolve(tmp_path, caplog) -> None:
    assert cli.main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "--acts" in caplog.text
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--model", "m"]) == 2
    assert "needs --site and --tokens" in caplog.text
    with pytest.raises(SaescopeError, match="unknown training setting"):
        train_saes(tmp_path / "run", cache_dir=tmp_path, batch_sise=64)


@pytest.mark.parametrize("flag", [["--tokens", "0"], ["--epochs", "0"], ["--holdout", "-1"]])
def test_train_refuses_zero_tokens_and_negative_holdout(tmp_path, flag, caplog) -> None:
    argv = ["train", "--acts", str(tmp_path / "no-cache"), "--out", str(tmp_path / "r"), *flag]
    assert cli.main(argv) == 2  # refused before the (missing) cache is even opened
    assert ">=" in caplog.text
