"""The one special-token policy: ``keep_positions``, and that nothing else decides it."""

from pathlib import Path

import torch
import transformers as tf

from saescope.data import keep_positions
from saescope.data.special import _special_ids

# the tiny tokenizer: pad 0, eos 1, bos 2, unk 3
IDS = torch.tensor([[2, 10, 11, 1, 3], [0, 0, 2, 12, 13]])  # (2, 5)
ATTENTION = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])


def test_special_positions_and_padding_are_dropped(tokenizer) -> None:
    assert _special_ids(tokenizer).tolist() == [0, 1, 2, 3]
    keep = keep_positions(IDS, tokenizer, attention_mask=ATTENTION)
    assert keep.tolist() == [
        [False, True, True, False, False],  # BOS, EOS, unk dropped
        [False, False, False, True, True],  # left padding and BOS dropped
    ]
    assert keep_positions(IDS, tokenizer).tolist()[1] == [False, False, False, True, True]


def test_keeping_special_tokens_still_drops_padding(tokenizer) -> None:
    keep = keep_positions(IDS, tokenizer, exclude_special=False, attention_mask=ATTENTION)
    assert keep.tolist() == [[True] * 5, [False, False, True, True, True]]
    # without a mask there is no padding: a pad token in the text is just a special token
    assert keep_positions(IDS, tokenizer, exclude_special=False).all()


def test_dtype_and_the_config_of_a_model_without_tokenizer() -> None:
    config = tf.LlamaConfig(bos_token_id=2, eos_token_id=[1, 5], pad_token_id=None)
    keep = keep_positions(torch.tensor([[2, 5, 1, 7]], dtype=torch.int32), config)
    assert keep.tolist() == [[False, False, False, True]]
    assert keep_positions(torch.tensor([[2, 7]]), None).all()  # nothing known: nothing special


def test_ids_are_read_once_per_tokenizer_and_again_after_adding_tokens(tokenizer) -> None:
    tok = tf.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer, bos_token="<bos>"
    )
    first = _special_ids(tok)
    assert _special_ids(tok) is first  # cached
    tok.add_special_tokens({"additional_special_tokens": ["<turn>"]})
    turn = tok.convert_tokens_to_ids("<turn>")
    assert turn in _special_ids(tok).tolist()
    assert not keep_positions(torch.tensor([[turn]]), tok).any()


def test_only_the_policy_module_reads_special_token_ids() -> None:
    """The rule lives in data/special.py; a second copy anywhere in src/ fails here."""
    src = Path(__file__).parents[2] / "src" / "saescope"
    readers = sorted(
        str(p.relative_to(src)) for p in src.rglob("*.py") if "special_ids" in p.read_text()
    )
    assert readers == ["data/special.py"], readers
