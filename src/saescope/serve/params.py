"""Reading what a request sends: every field checked against its type and the server's limits
before any model work starts. Nothing sent is executed or used as a path."""

from __future__ import annotations

import math
from typing import Any

from saescope.errors import SaescopeError
from saescope.serve.state import Limits


class BadRequest(SaescopeError):
    """A request the server refuses; ``status`` is the HTTP code (422 unless said)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def text(body: dict[str, Any], key: str, limits: Limits, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise BadRequest(f"{key!r} must be a string, got {_kind(value)}")
    if not value.strip():
        raise BadRequest(f"{key!r} is empty; give some text")
    if len(value) > limits.text_chars:
        raise BadRequest(
            f"{key!r} is {len(value):,} characters; the limit is {limits.text_chars:,}", 413
        )
    return value


def integer(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise BadRequest(f"{key!r} must be a whole number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key!r} must be a whole number, got {_kind(value)}")
    if not low <= value <= high:
        raise BadRequest(f"{key!r} must be in {low}..{high}, got {value}")
    return value


def number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadRequest(f"{key!r} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{key!r} must be a finite number, got {_kind(value)}")
    if not low <= value <= high:
        raise BadRequest(f"{key!r} must be in {low:g}..{high:g}, got {value:g}")
    return float(value)


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{key!r} must be true or false, got {_kind(value)}")
    return value


def strings(body: dict[str, Any], key: str, limit: int, chars: int) -> list[str]:
    value = body.get(key, [])
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{key!r} must be a list of strings, got {_kind(value)}")
    if len(value) > limit:
        raise BadRequest(f"{key!r} has {len(value)} entries; the limit is {limit}")
    if any(len(v) > chars for v in value):
        raise BadRequest(f"an entry of {key!r} is longer than {chars} characters")
    return [v.strip() for v in value if v.strip()]


def numbers(body: dict[str, Any], key: str, limit: int) -> list[float]:
    value = body.get(key)
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.replace(",", " ").split()]
        except ValueError:
            raise BadRequest(f"{key!r} must be numbers like 0, 20, 40, got {value!r}") from None
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{key!r} must be a non-empty list of numbers, got {_kind(value)}")
    if len(value) > limit:
        raise BadRequest(f"{key!r} has {len(value)} points; the limit is {limit}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise BadRequest(f"{key!r} must hold finite numbers, got {v!r}")
        out.append(float(v))
    return out


def token_count(tokenizer: Any, value: str, key: str, limits: Limits) -> int:
    n = len(tokenizer(value)["input_ids"])
    if n > limits.prompt_tokens:
        raise BadRequest(
            f"{key!r} is {n:,} tokens; the limit is {limits.prompt_tokens:,}: shorten it", 413
        )
    return n


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    shown = repr(value)
    return f"{type(value).__name__} {shown[:40]}{'...' if len(shown) > 40 else ''}"
