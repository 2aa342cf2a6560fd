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
    """

    system: str
    user: str
    turns: tuple[Mapping[str, str], ...] = ()
    schema: Mapping[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    def as_messages(self) -> list[dict[str, str]]:
        """The prompt as chat messages (OpenAI/LiteLLM shape)."""
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.user},
                *({"role": t["role"], "content": t["content"]} for t in self.turns)]
