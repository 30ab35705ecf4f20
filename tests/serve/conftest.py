"""A tiny saved model, a TopK SAE on it and its index, built once for the serve tests."""

from __future__ import annotations

import json

import pytest
from tiny_models import save_tiny_model

from saescope import cli
from saescope.sae import SAEConfig, SAEMetadata, build_sae, save_sae

SITE = "layers.1.resid_post"
SENTENCES = [
    "The death of the king was mourned in every town.",
    "Bridge number {i} spans a river in town.",
    "A cookie jar sat by the garden window.",
]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    save_tiny_model(root / "model", "llama")
    corpus = root / "corpus.jsonl"
    lines = [json.dumps({"text": SENTENCES[i % 3].format(i=i)}) for i in range(300)]
    corpus.write_text("\n".join(lines))
    cfg = SAEConfig(
        d_in=64, d_sae=48, architecture="topk", k=4, metadata=SAEMetadata(hook_name=SITE)
    )
    save_sae(build_sae(cfg, seed=1), root / "sae")
    (root / "sae" / "metrics.json").write_text(json.dumps({"fvu": 0.25, "l0": 4.0}))
    index = root / "index.db"
    argv = ["index", "--sae", str(root / "sae"), "--out", str(index), "--tokens", "2000",
            "--context-size", "32", "--top", "4", "--model", str(root / "model"),
            "--dtype", "fp32", "--dataset", str(corpus)]  # fmt: skip
    assert cli.main(argv) == 0
    index.chmod(0o444)  # the server must only ever read it
    return root, index


@pytest.fixture(scope="session")
def model(built):
    from saescope.models import load_model

    root, _ = built
    return load_model(str(root / "model"), dtype="fp32", device="cpu")


@pytest.fixture(scope="session")
def served(built):
    from saescope.serve.state import load_served

    _root, index = built
    return load_served("tiny", index)


@pytest.fixture(scope="session")
def app(served, model):
    from saescope.serve.app import create_app
    from saescope.serve.state import Limits

    return create_app([served], model, Limits(prompt_tokens=40, new_tokens=8, samples=2))


@pytest.fixture(scope="session")
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
