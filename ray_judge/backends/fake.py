"""A backend that needs no model: for tests, dry runs and benchmarks of the pool itself.

Judged through the same :class:`~ray_judge.judging.runner.JudgeRunner` as the real
backends (rubric, retries, parsing), so only the model call is fake.

Example:
    >>> backend = FakeBackend(spec, config, handler=lambda prompt: "Fine.\\nSCORE: 7")
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from ..prompt import JudgePrompt
from .base import Backend, Completion

__all__ = ["FakeBackend", "content_score"]

Handler = Callable[[JudgePrompt], "str | Completion | Awaitable[str | Completion]"]


_RESPONSE_BLOCK = re.compile(r"^<<<BEGIN RESPONSE (\w+)>>>\n(.*?)\n<<<END RESPONSE \1>>>$",
                             re.S | re.M)


def content_score(text: str) -> int:
    """The fake's score (0-10) of one response in a group or pair: from its text alone,
    so a test can tell whether each verdict landed on its own response."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[0] % 11


def _stable_score(prompt: JudgePrompt) -> str:
    # Deterministic, so repeated runs and cache tests see the same verdicts. A group
    # (RESPONSE 1..k blocks) or a pair (RESPONSE A, B) gets the answer its judge asks
    # for, each response scored from its own block.
    blocks = dict(_RESPONSE_BLOCK.findall(prompt.user))
    if set(blocks) == {"A", "B"}:
        a, b = content_score(blocks["A"]), content_score(blocks["B"])
        return f'A {a}, B {b}.\n{{"preference": {5 + (a - b) / 2:g}}}'
    if blocks and all(label.isdigit() for label in blocks):
        scores = [content_score(blocks[str(d)]) for d in range(1, len(blocks) + 1)]
        return "Deterministic fake verdicts.\n" + json.dumps({"scores": scores})
    digest = hashlib.sha256(prompt.user.encode()).digest()
    return f"Deterministic fake verdict.\nSCORE: {digest[0] % 11}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class FakeBackend(Backend):
    """Answers with ``handler(prompt)`` (text or Completion), or a stable pseudo-score.

    ``handler`` may raise a BackendCallError subclass to play a failing model, and may be
    async. ``latency_s`` adds a sleep per call; when the backend is built from a spec
    alone (through the registry, in a pool dry run) a model name ending in ``@<seconds>``,
    e.g. ``litellm:fake/slow@0.2``, sets it, and one with ``$<usd>`` before it, e.g.
    ``litellm:fake/paid$0.01``, reports that cost per call (a billed provider whose
    price is known, for the spend budget's tests). ``calls`` counts attempts.
    """

    kind = "fake"

    def __init__(self, *args: Any, handler: Handler | None = None, latency_s: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handler = handler
        _, at, seconds = self.model.rpartition("@")
        self.latency_s = latency_s or (float(seconds) if at and _is_number(seconds) else 0.0)
        _, dollar, usd = (self.model.rpartition("@")[0] if at else self.model).rpartition("$")
        self.cost_usd = float(usd) if dollar and _is_number(usd) else 0.0
        # Visible in every Verdict, so a dry run's numbers are never mistaken for a model's.
        self.model = f"fake({self.model})"
        self.calls = 0
        self.closed = False

    async def complete(self, prompt: JudgePrompt, *, timeout: float) -> Completion:
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(min(self.latency_s, timeout + 1.0))
        out = _stable_score(prompt) if self.handler is None else self.handler(prompt)
        if asyncio.iscoroutine(out) or isinstance(out, asyncio.Future):
            out = await out
        if isinstance(out, Completion):
            return out
        return Completion(text=str(out), model=self.model, input_tokens=len(prompt.user) // 4,
                          output_tokens=len(str(out)) // 4, cost_usd=self.cost_usd)

    async def aclose(self) -> None:
        self.closed = True
