from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

from tiny_models import tiny_corpus, tiny_model, tiny_tokenizer

from saescope.data import Corpus


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def corpus() -> Corpus:
    return tiny_corpus()


@pytest.fixture
def model(tokenizer):
    return tiny_model("llama", tokenizer)
