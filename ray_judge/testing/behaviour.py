"""What the fake provider is told to do (:class:`Behaviour`) and what it saw
(:class:`RecordedRequest`): plain values, JSON-ready for the control API."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["DEFAULT_TEXT", "STRUCTURED_OUTPUT_TOOL", "Behaviour", "RecordedRequest"]

DEFAULT_TEXT = "The response matches the reference.\nSCORE: 8"
#: The tool through which the Claude Code CLI (``--json-schema``) takes structured output.
STRUCTURED_OUTPUT_TOOL = "StructuredOutput"


@dataclass(frozen=True)
class Behaviour:
    """How the fake answers one model call.

    ``text`` is the answer (or, with an error ``status``, the error message, rendered
    in the format of the route that was called). ``body`` overrides the whole body.
    ``hang`` never answers (until the client leaves or the server stops), ``drop``
    closes the connection without a response, ``malformed`` answers 200 with a body
    that is not JSON (or a broken SSE stream). ``cut`` sends the status line, the
    headers and half the body, then closes the connection (a reset mid-body); ``stall``
    sends the same half and then nothing more (a body slower than any timeout).
    ``delay_s`` is added to the server's latency before any of this. ``structured`` (any
    JSON value) answers with structured output: on the Anthropic route a ``tool_use``
    call of the request's structured-output tool (how the Claude Code CLI asks for it;
    see :data:`STRUCTURED_OUTPUT_TOOL`) with ``text`` before it when not empty, on the
    OpenAI route the JSON as the message text.
    """

    text: str = DEFAULT_TEXT
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    delay_s: float = 0.0
    hang: bool = False
    drop: bool = False
    malformed: bool = False
    cut: bool = False
    stall: bool = False
    structured: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Behaviour.text must be a string, got {type(self.text).__name__}")
        if not (isinstance(self.status, int) and 100 <= self.status <= 599):
            raise ValueError(f"Behaviour.status must be an HTTP status 100..599, got "
                             f"{self.status!r}")
        if not (isinstance(self.delay_s, (int, float)) and self.delay_s >= 0):
            raise ValueError(f"Behaviour.delay_s must be a number >= 0, got {self.delay_s!r}")
        if self.body is not None and not isinstance(self.body, str):
            raise TypeError(f"Behaviour.body must be a string or None, got "
                            f"{type(self.body).__name__}")
        headers = dict(self.headers)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise TypeError(f"Behaviour.headers must map str to str, got {headers!r}")
        object.__setattr__(self, "headers", headers)  # a private copy: callers keep theirs
        if self.structured is not None:
            try:
                json.dumps(self.structured)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"Behaviour.structured must be JSON-ready, got "
                                f"{self.structured!r}: {exc}") from None

    def __hash__(self) -> int:  # the headers dict is not hashable; its items are
        return hash((self.text, self.status, tuple(sorted(self.headers.items())), self.body,
                     self.delay_s, self.hang, self.drop, self.malformed, self.cut, self.stall,
                     json.dumps(self.structured, sort_keys=True)))

    @classmethod
    def ok(cls, text: str = DEFAULT_TEXT, *, delay_s: float = 0.0) -> Behaviour:
        return cls(text=text, delay_s=delay_s)

    @classmethod
    def structured_output(cls, value: Any, text: str = "", *,
                          delay_s: float = 0.0) -> Behaviour:
        """Answer with structured output ``value`` (see ``structured``), ``text`` first."""
        if value is None:
            raise ValueError("Behaviour.structured_output needs a value, got None")
        return cls(text=text, structured=value, delay_s=delay_s)

    @classmethod
    def error(cls, status: int, message: str = "fake provider error", *,
              retry_after: float | str | None = None) -> Behaviour:
        """An error in the called provider's format; ``retry_after`` in seconds or an HTTP-date."""
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = (retry_after if isinstance(retry_after, str)
                                      else f"{retry_after:g}")
        return cls(text=message, status=status, headers=headers)

    @classmethod
    def usage_limit(cls, reset_epoch: int) -> Behaviour:
        """A subscription 5-hour limit: 429 with Anthropic's unified rate-limit headers."""
        reset = str(int(reset_epoch))
        return cls(
            text="This request would exceed your account's rate limit. Please try again later.",
            status=429,
            headers={
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-reset": reset,
                "anthropic-ratelimit-unified-representative-claim": "five_hour",
                "anthropic-ratelimit-unified-5h-status": "rejected",
                "anthropic-ratelimit-unified-5h-reset": reset,
                "anthropic-ratelimit-unified-5h-utilization": "1.0",
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for the control API."""
        out = asdict(self)
        out["headers"] = dict(self.headers)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Behaviour:
        """The inverse of :meth:`to_dict`; unknown keys are an error, missing ones default."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a behaviour must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown behaviour field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @property
    def _plain_default(self) -> bool:
        return (self.status == 200 and self.body is None and self.text == DEFAULT_TEXT
                and self.structured is None
                and not (self.hang or self.drop or self.malformed or self.cut or self.stall))


def _hang(cls: type[Behaviour]) -> Behaviour:
    """Never answer, until the client goes away or the server stops."""
    return cls(hang=True)


def _drop(cls: type[Behaviour]) -> Behaviour:
    """Close the TCP connection without sending a response."""
    return cls(drop=True)


def _malformed(cls: type[Behaviour]) -> Behaviour:
    """Answer 200 with a body that is not JSON (or an SSE stream that breaks)."""
    return cls(malformed=True)


def _cut(cls: type[Behaviour]) -> Behaviour:
    """Send the headers and half of a good answer, then close the connection."""
    return cls(cut=True)


def _stall(cls: type[Behaviour]) -> Behaviour:
    """Send the headers and half of a good answer, then nothing more."""
    return cls(stall=True)


# ``hang``, ``drop``, ``malformed``, ``cut`` and ``stall`` are fields on instances and
# constructors on the class: an instance keeps its bool in ``__dict__``, which wins over a
# classmethod. They are attached after @dataclass has read the fields, so the fields'
# defaults stay False.
Behaviour.hang = classmethod(_hang)  # type: ignore[assignment,method-assign]
Behaviour.drop = classmethod(_drop)  # type: ignore[assignment,method-assign]
Behaviour.malformed = classmethod(_malformed)  # type: ignore[assignment,method-assign]
Behaviour.cut = classmethod(_cut)  # type: ignore[assignment,method-assign]
Behaviour.stall = classmethod(_stall)  # type: ignore[assignment,method-assign]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it.

    Header names are lower-cased; ``body`` is None when it was not a JSON object; ``at``
    is the arrival time (``time.time()``).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedRequest:
        return cls(**{f.name: data[f.name] for f in fields(cls)})
