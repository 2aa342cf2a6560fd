"""The fake provider's prompt caches: Anthropic's breakpoints and OpenAI's automatic one.

Anthropic (Messages API): a content block marked ``cache_control: {"type":
"ephemeral"}`` (a tool, a system block, a message block) ends a cacheable prefix, in the
order tools, system, messages. A prefix shorter than the model's minimum is not cached.
A request reads the longest marked prefix that is warm (written or read within its TTL:
5 minutes, or an hour with ``"ttl": "1h"``) and writes every longer marked prefix that
is long enough; its usage says ``cache_read_input_tokens`` (the prefix read),
``cache_creation_input_tokens`` (from there to the longest prefix written) and
``input_tokens`` (the rest), with ``output_tokens``.

OpenAI (chat completions): a prompt of at least 1,024 tokens is cached on its own, in
128-token steps; ``usage.prompt_tokens_details.cached_tokens`` is the longest step of
this prompt seen within 5 minutes.

Caches are per model. Tokens are characters / 4, as in the rest of the fake.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PromptCaches", "anthropic_min_tokens", "strip_marks"]

_TTL_S = {"5m": 300.0, "1h": 3600.0}
_OPENAI_MIN = 1024
_OPENAI_STEP = 128


def anthropic_min_tokens(model: str) -> int:
    """The shortest prefix Anthropic caches for ``model`` (its documented minimums)."""
    name = model.lower()
    if "haiku-4-5" in name or "opus-4-5" in name:
        return 4096
    if "haiku" in name:
        return 2048
    return 1024


def strip_marks(value: Any) -> Any:
    """``value`` without ``cache_control`` keys: the marks are not tokens the model reads."""
    if isinstance(value, dict):
        return {k: strip_marks(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_marks(v) for v in value]
    return value


def _chars(obj: Any) -> int:
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, dict):
        return sum(_chars(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_chars(v) for v in obj)
    return 0


def _units(body: dict[str, Any]) -> list[tuple[str, int, Any]]:
    """The prompt as cacheable units in Anthropic's order: (identity, chars, mark)."""
    units: list[tuple[str, int, Any]] = []

    def add(where: str, block: Any) -> None:
        mark = block.get("cache_control") if isinstance(block, dict) else None
        plain = strip_marks(block)
        units.append((where + json.dumps(plain, sort_keys=True), _chars(plain), mark))

    for tool in body.get("tools") or ():
        add("tool:", tool)
    system = body.get("system")
    if isinstance(system, str):
        add("system:", {"type": "text", "text": system})
    elif isinstance(system, list):
        for block in system:
            add("system:", block)
    for i, message in enumerate(body.get("messages") or ()):
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else (
            content if isinstance(content, list) else [])
        for block in blocks:
            add(f"{i}:{role}:", block)
    return units


class PromptCaches:
    """Both providers' prompt caches of one fake server (thread-safe; ``clock`` injectable)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[float, float]] = {}  # key -> (expires, ttl)

    def clear(self) -> None:
        """Forget every cached prefix (a cold cache)."""
        with self._lock:
            self._entries.clear()

    def _warm(self, key: bytes, now: float) -> bool:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            return False
        self._entries[key] = (now + entry[1], entry[1])  # a hit refreshes the TTL
        return True

    def anthropic(self, body: dict[str, Any], total: int) -> dict[str, int]:
        """The usage counts of ``body`` (``total`` input tokens), caching as Anthropic."""
        model = str(body.get("model"))
        minimum = anthropic_min_tokens(model)
        digest = hashlib.sha256(model.encode())
        marks: list[tuple[bytes, int, float]] = []  # (key, tokens, ttl) per breakpoint
        chars = 0
        for identity, size, mark in _units(body):
            digest.update(identity.encode("utf-8", "surrogatepass"))
            chars += size
            if isinstance(mark, dict) and mark.get("type") == "ephemeral":
                ttl = _TTL_S.get(str(mark.get("ttl", "5m")), _TTL_S["5m"])
                marks.append((digest.copy().digest(), min(chars // 4, total), ttl))
        read = written = 0
        with self._lock:
            now = self.clock()
            for key, tokens, _ in reversed(marks):
                if tokens >= minimum and self._warm(key, now):
                    read = tokens
                    break
            for key, tokens, ttl in marks:
                if tokens > read and tokens >= minimum:
                    self._entries[key] = (now + ttl, ttl)
                    written = tokens - read
        return {"input_tokens": total - read - written,
                "cache_creation_input_tokens": written, "cache_read_input_tokens": read}

    def openai(self, body: dict[str, Any], total: int) -> int:
        """The cached prompt tokens of ``body`` (``total`` tokens), caching as OpenAI."""
        if total < _OPENAI_MIN:
            return 0
        text = json.dumps(strip_marks([body.get("tools"), body.get("messages")]),
                          sort_keys=True)
        model = str(body.get("model"))
        steps = range(_OPENAI_MIN, min(total, len(text) // 4) + 1, _OPENAI_STEP)
        keys = [(n, hashlib.sha256(f"{model}\x00{text[:4 * n]}".encode(
            "utf-8", "surrogatepass")).digest()) for n in steps]
        cached = 0
        with self._lock:
            now = self.clock()
            for n, key in reversed(keys):
                if self._warm(key, now):
                    cached = n
                    break
            for n, key in keys:
                if n > cached:
                    self._entries[key] = (now + _TTL_S["5m"], _TTL_S["5m"])
        return cached
