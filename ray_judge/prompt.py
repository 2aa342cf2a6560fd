"""The rendered prompt: what a judge sends and every transport takes.

Judging (:mod:`ray_judge.judging`) renders a request into a :class:`JudgePrompt`; a
backend (:mod:`ray_judge.backends`) sends it and returns the model's answer. It is the
one value the two layers share, so it lives below both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["JudgePrompt"]


@dataclass(frozen=True)
class JudgePrompt:
    """What is sent to the judge model: ``system`` instructions and ``user`` data.

    ``turns`` are later turns of the same judgement (a correction turn: the judge's
    answer as ``assistant``, then our follow-up as ``user``), after the first user
    message. ``schema`` asks for structured output (a JSON schema), ``temperature`` and
    ``max_tokens`` override the backend's defaults; ``None`` leaves them to the backend.

    ``shared`` is how many leading characters of ``user`` every response to the same task
    shares (the PROMPT, REFERENCE and field blocks, before the first response): where a
    provider's prompt cache may put a breakpoint. 0 means no shared part; it never
    changes the text sent.
    """

    system: str
    user: str
    turns: tuple[Mapping[str, str], ...] = ()
    schema: Mapping[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    shared: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.shared, bool) or not (
                isinstance(self.shared, int) and 0 <= self.shared <= len(self.user)):
            raise ValueError(f"shared must be an integer from 0 to len(user) "
                             f"({len(self.user)}), got {self.shared!r}")

    def as_messages(self) -> list[dict[str, str]]:
        """The prompt as chat messages (OpenAI/LiteLLM shape)."""
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.user},
                *({"role": t["role"], "content": t["content"]} for t in self.turns)]
