"""The transport interface: one attempt at one rendered prompt (:meth:`Backend.complete`).

A backend implements only ``complete``: send a system and a user message (and any later
turns), return the model's answer as a :class:`Completion`, or raise a
:class:`~ray_judge.errors.BackendCallError` subclass that says what went wrong. It knows
nothing of judges: rendering a request, reading the answer, correction turns, samples and
the retries between attempts are :class:`ray_judge.judging.runner.JudgeRunner`'s, which
takes any backend, the fake included.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config import JudgeConfig
from ..prompt import JudgePrompt
from ..spec import BackendSpec

__all__ = ["Backend", "Completion"]


@dataclass(frozen=True)
class Completion:
    """The model's answer to one attempt."""

    text: str
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    #: input tokens read from / written to the provider's prompt cache (a part of
    #: ``input_tokens``); None when the provider did not say
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    #: the structured output (parsed JSON) when the prompt asked for a schema and the
    #: backend delivered one; ``None`` means read ``text`` with the judge's parser
    structured: Any = None


class Backend(ABC):
    """A judge transport. Subclasses implement :meth:`complete` and maybe :meth:`aclose`."""

    kind: ClassVar[str]

    def __init__(self, spec: BackendSpec, config: JudgeConfig) -> None:
        self.spec = spec
        self.config = config
        self.model = spec.model(config.ccode_models)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.spec)!r}, model={self.model!r})"

    @abstractmethod
    async def complete(self, prompt: JudgePrompt, *, timeout: float) -> Completion:
        """Make one attempt within ``timeout`` seconds; raise BackendCallError on failure."""

    async def prepare(self) -> None:  # noqa: B027 - most backends need no warm-up
        """One-time warm-up before the first attempt (e.g. a slow import), so that it is
        not charged to an attempt's timeout. Raise BackendUnavailableError if it cannot."""

    async def aclose(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release processes and connections. Safe to call twice."""
