"""``saescope vector``, ``steer --vector`` and ``saescope frontier`` end to end on a tiny saved
model, an SAE at its site and an index of that SAE."""

import json

import pytest
from tiny_models import save_tiny_model

from saescope import cli
from saescope.models import load_model
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae
from saescope.steer import GenerationConfig, VectorIntervention, generate_with, load_vector

SITE = "layers.1.resid_post"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vector-cli")
    save_tiny_model(root / "model", "gpt2")
    meta = SAEMetadata(model_name=str(root / "model"), hook_name="blocks.1.hook_resid_post")
    sae = build_sae(SAEConfig(d_in=64, d_sae=128, architecture="topk", k=4, metadata=meta), 0)
    save_sae(sae, root / "sae")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"text": f"Bridge {i} spans a river in town."}) for i in range(200))
    )
    common = ["--model", str(root / "model"), "--dtype", "fp32"]
    argv = ["index", "--sae", str(root / "sae"), "--out", str(root / "index.db"), "--tokens",
            "1000", "--context-size", "32", "--top", "4", "--dataset", str(corpus), *common]  # fmt: skip
    assert cli.main(argv) == 0
    return root, common


def test_vector_writes_the_file_and_prints_its_features(dirs, capsys, monkeypatch) -> None:
    root, common = dirs
    monkeypatch.setenv("COLUMNS", "200")
    prompts = root / "negative.txt"
    prompts.write_text("Watson wrote it\n\nSherlock said little\n")
    out = root / "mean.safetensors"
    argv = ["vector", *common, "--site", SITE, "--positive", "Bridges span rivers",
            "--positive", "The Golden Gate Bridge", "--negative-file", str(prompts),
            "--reduce", "mean", "--out", str(out), "--sae", str(root / "sae"),
            "--index", str(root / "index.db"), "--terms", "5"]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "5 SAE decoder rows" in text and "cumulative" in text and "%" in text
    vector = load_vector(out)
    assert vector.vector.shape == (64,) and vector.site == SITE and vector.reduce == "mean"
    assert vector.negative == ("Watson wrote it", "Sherlock said little")


def test_vector_refuses_bad_input(dirs, caplog) -> None:
    root, common = dirs
    base = ["vector", *common, "--site", SITE, "--out", str(root / "x.safetensors")]
    argv = [*base, "--positive", "a", "--positive", "b", "--negative", "c"]
    assert cli.main(argv) == 2  # aligned pairs one to one
    assert "--reduce mean" in caplog.text
    assert cli.main([*base, "--positive", "a"]) == 2
    assert "--negative" in caplog.text
    argv = [*base, "--site", "layers.0.resid_post", "--positive", "a", "--negative", "b",
            "--sae", str(root / "sae")]  # fmt: skip
    assert cli.main(argv) == 2
    assert "trained at layers.1.resid_post" in caplog.text
    assert not (root / "x.safetensors").exists()


def test_steer_with_a_vector_adds_it_at_its_site(dirs, capsys, monkeypatch) -> None:
    root, common = dirs
    monkeypatch.setenv("COLUMNS", "400")
    out = root / "mean-pair.safetensors"
    argv = ["vector", *common, "--site", SITE, "--positive", "Bridges span",
            "--negative", "Watson wrote", "--reduce", "mean", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    capsys.readouterr()
    prompt = "Sherlock Holmes said"
    argv = ["steer", *common, "--prompt", prompt, "--max-new", "6", "--sample",
            "--vector", f"{out}=20"]  # fmt: skip
    assert cli.main(argv) == 0
    text = "".join(capsys.readouterr().out.split())  # rich wraps the title: compare unspaced
    assert f"vector{out}=20" in text
    model = load_model(str(root / "model"), dtype="fp32")
    vector = load_vector(out, model)
    config = GenerationConfig(max_new_tokens=6, sample=True)  # what steer --sample runs
    [clean] = generate_with(model, prompt, [], config)
    by_hand = [VectorIntervention(SITE, vector.vector, 20.0)]
    [steered] = generate_with(model, prompt, by_hand, config)
    assert clean.tokens.tolist() != steered.tokens.tolist()  # the vector changes generation
    assert "".join(steered.texts[0].split()) in text and "".join(clean.texts[0].split()) in text


def test_steer_refuses_bad_vector_arguments(dirs, caplog) -> None:
    root, common = dirs
    base = ["steer", *common, "--prompt", "Bridges", "--max-new", "2"]
    assert cli.main([*base, "--vector", str(root / "mean-pair.safetensors")]) == 2
    assert "FILE=COEF" in caplog.text
    assert cli.main([*base, "--vector", f"{root / 'missing.safetensors'}=2"]) == 2
    assert "no steering vector file" in caplog.text


def test_frontier_end_to_end(dirs, capsys, monkeypatch) -> None:
    root, common = dirs
    monkeypatch.setenv("COLUMNS", "200")
    vector = root / "frontier.safetensors"
    argv = ["vector", *common, "--site", SITE, "--positive", "Bridges span rivers",
            "--negative", "Watson wrote it", "--reduce", "mean", "--out", str(vector)]  # fmt: skip
    assert cli.main(argv) == 0
    out = root / "frontier"
    argv = ["frontier", *common, "--vector", str(vector), "--sae", str(root / "sae"),
            "--prompt", "Bridges", "--topic", "river,the", "--coefs", "0,6", "--rollouts", "3",
            "--max-new", "4", "--loss-contexts", "2", "--loss-context-size", "16",
            "--dataset", str(root / "corpus.jsonl"), "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "/3" in text and "vector without feature" in text
    assert (out / "frontier.png").stat().st_size > 1000
    record = json.loads((out / "frontier.json").read_text())
    points = record["points"]
    assert len(points) == 6 and {p["rollouts"] for p in points} == {3}
    zero = [p for p in points if p["coefficient"] == 0]
    assert len({(p["success"], p["loss"]) for p in zero}) == 1  # one unsteered point, shared
    assert all(p["loss_increase"] == 0 for p in zero)
    assert len(record["features"]) == 1


@pytest.mark.parametrize("command", ["vector", "frontier"])
def test_vector_commands_explain_themselves(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--sae" in capsys.readouterr().out
