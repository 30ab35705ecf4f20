import torch

from saescope.data import ContextConfig, pack_contexts


def _stream(corpus, tokenizer, seed):
    """The documents as one BOS-separated stream, in the order pack_contexts uses."""
    import random

    order = list(range(len(corpus)))
    random.Random(seed).shuffle(order)
    out: list[int] = []
    for i in order:
        out += [
            tokenizer.bos_token_id,
            *tokenizer(corpus.documents[i], add_special_tokens=False)["input_ids"],
        ]
    return out


def test_contexts_start_with_bos_and_cover_the_stream(corpus, tokenizer) -> None:
    config = ContextConfig(context_size=16, seed=3)
    contexts = list(pack_contexts(corpus, tokenizer, config))
    assert all(c.shape == (16,) and c[0] == tokenizer.bos_token_id for c in contexts)
    # Dropping each prepended BOS gives back the stream exactly.
    rebuilt: list[int] = []
    for c in contexts:
        tokens = c.tolist()
        starts_doc = (
            len(rebuilt) < len(stream := _stream(corpus, tokenizer, 3))
            and stream[len(rebuilt)] == tokens[0]
        )
        rebuilt += tokens if starts_doc else tokens[1:]
    assert rebuilt == stream[: len(rebuilt)]
    assert len(stream) - len(rebuilt) < 16


def test_order_is_deterministic_per_seed(corpus, tokenizer) -> None:
    def first(seed):
        return torch.stack(list(pack_contexts(corpus, tokenizer, ContextConfig(16, seed=seed))))

    assert torch.equal(first(1), first(1))
    assert not torch.equal(first(1), first(2))
