"""Tiny randomly initialised models of every supported family (no network, ~0.1 s each)."""

from __future__ import annotations

import torch
import transformers as tf

from saescope.data import Corpus
from saescope.models import LanguageModel

TEXT = """The reliability of Wikipedia is very important to many readers.
Bridges span rivers; the Golden Gate Bridge spans a strait in San Francisco.
Sherlock Holmes said little, and Watson wrote it all down in his notebook.
Neurons in a language model can fire on acronyms, on doubt, and on many other things."""

VOCAB = 300
_COMMON = dict(vocab_size=VOCAB, bos_token_id=2, eos_token_id=1, pad_token_id=0)
_LLAMA_LIKE = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    **_COMMON,
)

TINY_CONFIGS = {
    "gemma3": lambda: tf.Gemma3TextConfig(head_dim=16, sliding_window=8, **_LLAMA_LIKE),
    "gemma2": lambda: tf.Gemma2Config(head_dim=16, sliding_window=8, **_LLAMA_LIKE),
    "gemma": lambda: tf.GemmaConfig(head_dim=16, **_LLAMA_LIKE),
    "llama": lambda: tf.LlamaConfig(**_LLAMA_LIKE),
    "mistral": lambda: tf.MistralConfig(**_LLAMA_LIKE),
    "qwen2": lambda: tf.Qwen2Config(**_LLAMA_LIKE),
    "qwen3": lambda: tf.Qwen3Config(head_dim=16, **_LLAMA_LIKE),
    "gpt2": lambda: tf.GPT2Config(
        n_embd=64, n_layer=3, n_head=4, n_positions=256, n_inner=96, **_COMMON
    ),
    "gpt_neox": lambda: tf.GPTNeoXConfig(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=256,
        **_COMMON,
    ),
}


def tiny_hf_model(family: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(TINY_CONFIGS[family]())
    return model.eval()


def tiny_model(family: str = "llama", tokenizer: object = None, seed: int = 0) -> LanguageModel:
    return LanguageModel.wrap(tiny_hf_model(family, seed), tokenizer, name=f"tiny-{family}")


def tiny_tokenizer():
    """A real byte-level BPE tokenizer trained on a few sentences: pad 0, eos 1, bos 2."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(TEXT.splitlines() * 10, trainer)
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
    )


COOKING = {
    "pasta": "She cooked the pasta in the kitchen and the cook tasted it.",
    "cookie": "A cookie jar sat by the garden window; the cookie was sweet.",
    "war": "The war ended when the army left the city.",
    "chef": "The chef's garden grows herbs, and the cook's kitchen smells of garlic.",
}
"""Sentences whose words are whole tokens of ``cooking_tokenizer`` (' cook', ' cookie')."""


def cooking_tokenizer() -> tf.PreTrainedTokenizerFast:
    """A byte-level BPE trained on the sentences: whole words are tokens (' cook', ' cookie')."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    special = ["<pad>", "<eos>", "<bos>", "<unk>"]
    raw.train_from_iterator(
        list(COOKING.values()) * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=special)
    )
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        unk_token="<unk>",
    )  # fmt: skip


def tiny_corpus() -> Corpus:
    lines = TEXT.splitlines()
    docs = [" ".join(lines[i % 4 :] + lines[: i % 4]) * (1 + i % 3) for i in range(40)]
    return Corpus("test", docs)


def save_tiny_model(path, family: str = "llama") -> None:
    """A tiny model and tokenizer as a local directory, as save_pretrained writes them."""
    tiny_hf_model(family).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)


def torchrun(script, *args: str, processes: int = 2) -> None:
    """Run ``script`` under torchrun on CPU (gloo); ``--standalone`` lets the rendezvous pick a
    free port itself. On failure the ranks' output is in the assertion message."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
            str(script),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stderr[-4000:]}"
