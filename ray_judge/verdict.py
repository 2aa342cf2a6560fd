"""What goes into a judge (:class:`JudgeRequest`) and what comes out (:class:`Verdict`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .errors import shown
from .messages import check_messages, is_messages

__all__ = ["GroupRequest", "JudgeRequest", "Status", "Verdict"]


class Status(str, Enum):
    """Why a Verdict has, or lacks, a score. Compares equal to its string value."""

    OK = "ok"
    PARSE_ERROR = "parse_error"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    USAGE_LIMITED = "usage_limited"
    AUTH_ERROR = "auth_error"
    BACKEND_ERROR = "backend_error"
    INVALID_INPUT = "invalid_input"
    #: a spend limit (``LLM_JUDGE_BUDGET_USD``) was reached; ``retry_after`` says when
    #: the hourly window refills, when one will
    BUDGET_EXHAUSTED = "budget_exhausted"

    def __str__(self) -> str:
        return self.value


_TEXT_FIELDS = ("prompt", "response", "reference", "rubric")
_REQUIRED = ("prompt", "response")
_KNOWN = (*_TEXT_FIELDS, "metadata", "judge", "fields")
_OWN_FIELD = re.compile(r"\brequest\.(?=(?:prompt|response|reference|rubric|judge|fields)\b)")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _where(index: int | None) -> str:
    return "request" if index is None else f"request[{index}]"


@dataclass(frozen=True)
class JudgeRequest:
    """One rollout to grade.

    ``prompt`` is the task the policy was given, ``response`` the policy's output
    (untrusted); either may be text or a list of chat messages (OpenAI shape, rendered
    as a transcript). ``reference`` is the ground truth if any, ``rubric`` replaces the
    judge's instructions for this request, ``metadata`` is returned untouched. ``judge``
    names the judge definition (``None``: ``default``), ``fields`` holds extra named text
    inputs for its template (``{"dockerfile": "..."}``).
    """

    prompt: str | list[Any]
    response: str | list[Any]
    reference: str | None = None
    rubric: str | None = None
    metadata: Any = None
    judge: str | None = None
    fields: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        self._check(None)

    def _check(self, index: int | None) -> None:
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is None and name not in _REQUIRED:
                continue
            if name in _REQUIRED and is_messages(value):
                try:
                    check_messages(f"{_where(index)}.{name}", value)
                except (TypeError, ValueError) as exc:
                    raise TypeError(f"{_where(index)}.{name} must be a string or a list of "
                                    f"chat messages; {exc}") from None
                object.__setattr__(self, name, list(value))
                continue
            if not isinstance(value, str):
                raise TypeError(
                    f"{_where(index)}.{name} must be a string"
                    f"{' or a list of messages' if name in _REQUIRED else ''}, got "
                    f"{type(value).__name__}: {shown(value)}"
                )
        if self.judge is not None and not isinstance(self.judge, str):
            raise TypeError(f"{_where(index)}.judge must be a judge name (a string), got "
                            f"{type(self.judge).__name__}: {shown(self.judge)}")
        if self.fields is not None:
            object.__setattr__(self, "fields", _fields(self.fields, index))

    @classmethod
    def from_mapping(cls, item: object, index: int | None = None) -> JudgeRequest:
        """Build from a dict such as ``{"prompt": p, "response": r, "reference": g}``.

        Raises ``TypeError``/``ValueError`` naming the index and the field.
        """
        if isinstance(item, JudgeRequest):
            return item
        if not isinstance(item, Mapping):
            raise TypeError(
                f"{_where(index)} must be a dict with 'prompt' and 'response', "
                f"got {type(item).__name__}: {shown(item)}"
            )
        unknown = sorted(str(k) for k in item if k not in _KNOWN)
        if unknown:
            raise ValueError(
                f"{_where(index)} has unknown field(s) {unknown}; "
                f"known: {', '.join(_KNOWN)}"
            )
        for name in _REQUIRED:
            if name not in item:
                raise ValueError(f"{_where(index)} is missing the field {name!r}")
        try:
            return cls(**{k: item[k] for k in item})
        except (TypeError, ValueError) as exc:
            if index is None:
                raise
            raise type(exc)(_OWN_FIELD.sub(f"{_where(index)}.", str(exc))) from None


def _fields(fields: object, index: int | None) -> dict[str, str]:
    where = f"{_where(index)}.fields"
    if not isinstance(fields, Mapping):
        raise TypeError(f"{where} must be a dict of name -> text, got "
                        f"{type(fields).__name__}: {shown(fields)}")
    out = {}
    for name, value in fields.items():
        if not (isinstance(name, str) and _FIELD_NAME.fullmatch(name)):
            raise ValueError(f"{where}: field names must be identifiers such as 'dockerfile', "
                             f"got {shown(name)}")
        if name.lower() in _TEXT_FIELDS:  # its data block would be named like theirs
            raise ValueError(f"{where}: {name!r} is a request argument, not a field; pass it "
                             f"as {name.lower()}=")
        if not isinstance(value, str):
            raise TypeError(f"{where}[{name!r}] must be a string, got "
                            f"{type(value).__name__}: {shown(value)}")
        out[name] = value
    return out



@dataclass(frozen=True)
class Verdict:
    """The judge's answer for one request.

    A failure is never a number: ``score`` is ``None`` whenever ``status`` is not ``ok``,
    so ``verdict.score or 0.0`` is a choice the caller makes, visibly.
    """

    score: float | None
    status: Status
    error: str | None = None
    backend: str | None = None
    model: str | None = None
    raw: str | None = None
    latency_s: float = 0.0
    attempts: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    cached: bool = False
    metadata: Any = None
    #: seconds the backend asked us to wait (429 Retry-After), when it said
    retry_after: float | None = None
    #: epoch seconds when a usage limit lifts, when the backend said
    resets_at: float | None = None
    #: the judge definition that made it, and its version (a hash of what it does)
    judge: str | None = None
    judge_version: str | None = None
    #: correction turns sent because an answer did not parse (also in ``attempts``)
    format_retries: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: the backend's own score when ``score`` was calibrated onto a reference backend's
    #: scale (``extra["calibration"]`` names the map); None when ``score`` is the raw one
    raw_score: float | None = None
    #: input tokens the provider read from / wrote to its prompt cache (part of
    #: ``input_tokens``, priced apart in ``cost_usd``); None when it did not say
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None

    def __post_init__(self) -> None:
        status = Status(self.status)
        object.__setattr__(self, "status", status)
        if status is Status.OK:
            if self.score is None or not (
                isinstance(self.score, (int, float)) and math.isfinite(self.score)
            ):
                raise ValueError(f"an ok Verdict needs a finite score, got {self.score!r}")
            if not 0.0 <= self.score <= 1.0:
                raise ValueError(f"score must be within [0, 1], got {self.score!r}")
            object.__setattr__(self, "score", float(self.score))
        elif self.score is not None:
            raise ValueError(f"a {status.value} Verdict must not carry a score ({self.score!r})")
        if self.raw_score is not None and not (
                status is Status.OK and isinstance(self.raw_score, (int, float))
                and 0.0 <= self.raw_score <= 1.0):
            raise ValueError(f"raw_score must be within [0, 1] and only on an ok Verdict, got "
                             f"{self.raw_score!r} on a {status.value} Verdict")

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def transport_retries(self) -> int:
        """Attempts beyond the first of each model call, correction turns left out."""
        calls = (len(self.extra.get("samples", ())) or 1) + ("group_call" in self.extra)
        return max(0, self.attempts - self.format_retries - calls)

    @property
    def counts_call(self) -> bool:
        """Whether totals over Verdicts take this one's ``attempts`` and
        ``format_retries``: every member of a group call carries the call's, so only the
        member shown first counts them. A pointwise fallback Verdict counts its own call;
        the one in the failed group's first place also carries that group call's (its
        ``extra["group_call"]`` says how many)."""
        if self.spent_elsewhere:
            return False
        group = self.extra.get("group")
        return (not isinstance(group, Mapping) or "fallback" in self.extra
                or group.get("position", 1) == 1)

    @property
    def spent_elsewhere(self) -> bool:
        """Whether this Verdict's call is counted on another: a cache hit, or a failure
        shared with an identical request in flight at the same time. Totals over
        Verdicts (tokens, cost, retries, latency) leave these out."""
        return self.cached or "shared_call" in self.extra

    def with_(self, **changes: Any) -> Verdict:
        """A copy with ``changes`` applied (dataclasses.replace, re-validated)."""
        return replace(self, **changes)

    @classmethod
    def failure(cls, status: Status | str, error: str, **fields: Any) -> Verdict:
        return cls(score=None, status=Status(status), error=error, **fields)


@dataclass(frozen=True)
class GroupRequest:
    """Several responses to one prompt, judged in one call (a GRPO group, or a pair).

    ``responses`` are the policy's outputs (untrusted), in the caller's order; the
    Verdicts come back in that order. Each, and ``prompt``, may be text or a list of chat
    messages (rendered as a transcript). ``judge`` names the judge definition (a group
    or pairwise kind); ``fields`` are extra named texts, each shown in a data block of
    its own; ``metadata`` is returned untouched in every member's Verdict.
    """

    prompt: str | list[Any]
    responses: tuple[str | list[Any], ...]
    reference: str | None = None
    judge: str | None = None
    metadata: Any = None
    fields: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        self._check(None)

    def _check(self, index: int | None) -> None:
        where = _where(index)
        if is_messages(self.prompt):
            check_messages(f"{where}.prompt", self.prompt)
            object.__setattr__(self, "prompt", list(self.prompt))
        elif not isinstance(self.prompt, str):
            raise TypeError(f"{where}.prompt must be a string or a list of messages, got "
                            f"{type(self.prompt).__name__}: {shown(self.prompt)}")
        if self.reference is not None and not isinstance(self.reference, str):
            raise TypeError(f"{where}.reference must be a string, got "
                            f"{type(self.reference).__name__}: {shown(self.reference)}")
        responses = self.responses
        if isinstance(responses, (str, bytes, Mapping)) or not isinstance(
                responses, (list, tuple)):
            raise TypeError(f"{where}.responses must be a list of strings, got "
                            f"{type(responses).__name__}: {shown(responses)}")
        if not responses:
            raise ValueError(f"{where}.responses is empty; a group needs at least one")
        for i, response in enumerate(responses):
            if is_messages(response):
                check_messages(f"{where}.responses[{i}]", response)
            elif not isinstance(response, str):
                raise TypeError(f"{where}.responses[{i}] must be a string or a list of "
                                f"messages, got {type(response).__name__}: "
                                f"{shown(response)}")
        object.__setattr__(self, "responses", tuple(
            list(r) if isinstance(r, (list, tuple)) else r for r in responses))
        if self.judge is not None and not isinstance(self.judge, str):
            raise TypeError(f"{where}.judge must be a judge's name, got {shown(self.judge)}")
        if self.fields is not None:
            object.__setattr__(self, "fields", _fields(self.fields, index))

    @classmethod
    def from_mapping(cls, item: Mapping[str, Any], index: int | None = None) -> GroupRequest:
        """Build from ``{"prompt": p, "responses": [...], "reference": g, ...}``."""
        unknown = sorted(str(k) for k in item if k not in _GROUP_FIELDS)
        if unknown:
            raise ValueError(f"{_where(index)} has unknown field(s) {unknown}; "
                             f"known for a group: {', '.join(_GROUP_FIELDS)}")
        for name in ("prompt", "responses"):
            if name not in item:
                raise ValueError(f"{_where(index)} is missing the field {name!r}")
        values = dict(item)
        request = cls.__new__(cls)
        for name in _GROUP_FIELDS:
            object.__setattr__(request, name, values.get(name))
        request._check(index)
        return request

    def member(self, index: int) -> JudgeRequest:
        """Response ``index`` as a request of its own (pointwise fallback)."""
        return JudgeRequest(self.prompt, self.responses[index], self.reference,
                            metadata=self.metadata)


_GROUP_FIELDS = ("prompt", "responses", "reference", "judge", "metadata", "fields")
