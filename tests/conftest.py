from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import VOCAB, tiny_model

from saescope.data import Corpus

TEXT = """The reliability of Wikipedia is very important to many readers.
Bridges span rivers; the Golden Gate Bridge spans a strait in San Francisco.
Sherlock Holmes said little, and Watson wrote it all down in his notebook.
Neurons in a language model can fire on acronyms, on doubt, and on many other things."""


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tokenizer():
    """A real byte-level BPE tokenizer trained on a few sentences: pad 0, eos 1, bos 2."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(TEXT.splitlines() * 10, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
    )


@pytest.fixture
def corpus() -> Corpus:
    lines = TEXT.splitlines()
    return Corpus(
        "test", [" ".join(lines[i % 4 :] + lines[: i % 4]) * (1 + i % 3) for i in range(40)]
    )


@pytest.fixture
def model(tokenizer):
    return tiny_model("llama", tokenizer)
