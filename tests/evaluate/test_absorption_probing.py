"""Absorption and k-sparse probing on constructed cases where the answer is known."""

import pytest
import torch

from saescope.errors import SaescopeError
from saescope.evaluate.absorption import LETTERS, LetterData, absorption, vocabulary_words
from saescope.evaluate.probing import ProbeTask, sparse_probing
from saescope.sae import SAEConfig, build_sae


def _sae(decoders: torch.Tensor, encoders: torch.Tensor, bias: float = -0.5):
    d_sae, d = decoders.shape
    cfg = SAEConfig(d_in=d, d_sae=d_sae, architecture="relu", apply_b_dec_to_input=False)
    sae = build_sae(cfg, seed=0)
    with torch.no_grad():
        sae.W_dec.copy_(decoders / decoders.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(encoders.t())
        sae.b_enc.fill_(bias)
        sae.b_dec.zero_()
    return sae.eval()


def _letters(n: int = 200, share: float = 0.3) -> tuple[LetterData, torch.Tensor]:
    """Words of 'a' (3 e0) and 'b' (3 e1); a ``share`` of each also carry 3 e2."""
    g = torch.Generator().manual_seed(0)
    e = torch.eye(8)
    letters = torch.tensor([0] * n + [1] * n)
    has_e2 = torch.rand(2 * n, generator=g) < share
    x = 3 * e[letters] + 3 * has_e2[:, None] * e[2] + 0.1 * torch.randn(2 * n, 8, generator=g)
    return LetterData(x, letters, [LETTERS[i] + "x" for i in letters.tolist()]), has_e2


def test_a_planted_absorbing_latent_is_detected_and_a_bystander_is_not() -> None:
    data, _ = _letters()
    e = torch.eye(8)
    # Latent 0 is 'a' but is switched off by e2; latent 2 fires on e2 instead.
    encoders = torch.stack([e[0] - 2 * e[2], e[1], e[2], e[3]])
    absorbing = _sae(torch.stack([e[0], e[1], e[0] + e[2], e[3]]), encoders)
    bystander = _sae(torch.stack([e[0], e[1], e[2], e[3]]), encoders)
    got = absorption(absorbing, data)
    a, b = got["per_letter"]["a"], got["per_letter"]["b"]
    assert a["latents"] == [0] and b["latents"] == [1]
    assert a["absorbers"] == [2]
    assert 0.15 < a["absorption_rate"] < 0.45  # the 30% of 'a' words carrying e2
    assert a["absorption_rate"] == a["false_negative_rate"]
    assert b["absorption_rate"] == 0 and b["false_negative_rate"] == 0
    assert got["absorption_rate"] == pytest.approx(a["absorption_rate"] / 2)
    # The same misses, but the latent that fires does not carry the letter's direction.
    other = absorption(bystander, data)["per_letter"]["a"]
    assert other["false_negative_rate"] == a["false_negative_rate"]
    assert other["absorption_rate"] == 0


def test_too_few_words_is_a_clear_error() -> None:
    data, _ = _letters(n=10)
    e = torch.eye(8)
    with pytest.raises(SaescopeError, match="no letter has 20\\+ words"):
        absorption(_sae(e[:4], e[:4]), data)


def test_vocabulary_words_are_leading_space_lower_case_letters() -> None:
    from tiny_models import cooking_tokenizer

    tok = cooking_tokenizer()
    words = vocabulary_words(tok)
    assert words and all(w.isalpha() and w.islower() and len(w) >= 2 for _, w in words)
    assert all(tok.decode([i]) == " " + w for i, w in words)


def test_a_separable_label_probes_to_one_and_a_random_one_to_a_half() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g)
    x[:, 0] += torch.where(x[:, 0] > 0, 1.0, -1.0)  # a margin around 0
    e = torch.eye(8)
    # Latents: relu(x0), relu(-x0), then the other coordinates.
    sae = _sae(torch.cat([e[:1], -e[:1], e[1:]]), torch.cat([e[:1], -e[:1], e[1:]]), bias=0.0)
    train = torch.arange(600) < 400
    tasks = [
        ProbeTask("separable", x, (x[:, 0] > 0).long(), train),
        ProbeTask("random", x, torch.randint(0, 2, (600,), generator=g), train),
    ]
    got = sparse_probing(sae, tasks, ks=(1, 2, 5))
    assert got["separable"]["raw"] == 1.0
    assert got["separable"]["sparse"] == {"1": 1.0, "2": 1.0, "5": 1.0}
    for acc in [got["random"]["raw"], *got["random"]["sparse"].values()]:
        assert 0.35 < acc < 0.65
    with pytest.raises(SaescopeError, match="needs at least 8 examples of both labels"):
        sparse_probing(sae, [ProbeTask("one", x, torch.zeros(600, dtype=torch.long), train)])
