"""One judgement of one request: correction turns when an answer does not parse, and
``samples`` independent judgements combined into one Verdict.

The transport (one backend call with its own bounded retries, see
:class:`ray_judge.judging.runner.JudgeRunner`) is passed in, so the rules here are the same
for every backend:

- A correction turn goes to the same backend with the conversation so far: the bad
  answer as ``assistant``, then a ``user`` turn quoting the parse error and restating
  the format. It counts in ``attempts`` and in ``format_retries``; transport retries
  count only in ``attempts``. No correction starts after the deadline. :func:`converse`
  runs these turns for a single response and, with its own reader, for a group.
- With ``samples = k`` the k judgements run at once; the Verdict is ``ok`` only when a
  majority are, its score combines the ok samples' scores (never a failed one), and
  ``extra["samples"]`` lists every sample's score, status and error, with the spread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ScoreParseError
from ..prompt import JudgePrompt
from ..verdict import Status, Verdict
from .definition import JudgeDefinition

__all__ = ["Conversation", "Outcome", "aggregate_scores", "converse", "judge_request"]


@dataclass(frozen=True)
class Outcome:
    """What the transport made of one call: an answer, or a failure (Verdict.failure
    keyword arguments), and the attempts it took."""

    attempts: int
    completion: Any = None
    failure: dict[str, Any] | None = None


Transport = Callable[[JudgePrompt], Awaitable[Outcome]]


async def judge_request(definition: JudgeDefinition, prompt: JudgePrompt,
                        transport: Transport, *, time_left: Callable[[], float]) -> Verdict:
    """Judge ``prompt`` with ``definition``'s samples and correction turns.

    The Verdict lacks the caller's fields (backend, model, metadata, latency): the
    backend adds them. ``time_left()`` is the seconds before the request's deadline.
    """
    stamp = {"judge": definition.name, "judge_version": definition.version}
    if definition.samples == 1:
        verdict = await _sample(definition, prompt, transport, time_left)
        return verdict.with_(**stamp)
    verdicts = await asyncio.gather(*(_sample(definition, prompt, transport, time_left)
                                      for _ in range(definition.samples)))
    return _combine(definition, list(verdicts)).with_(**stamp)


async def _sample(definition: JudgeDefinition, prompt: JudgePrompt, transport: Transport,
                  time_left: Callable[[], float]) -> Verdict:
    talk = await converse(prompt, transport, lambda completion: _read(definition, completion),
                          definition.correction, turns=definition.correction_turns,
                          time_left=time_left)
    counts = {"attempts": talk.attempts, "format_retries": talk.format_retries, **talk.usage}
    if talk.failure is not None:
        return Verdict.failure(**{**talk.failure, **counts})
    common = {"raw": talk.text, "model": talk.model, **counts}
    if talk.error is not None:
        extra = {} if definition.schema is None else {"structured": False}
        return Verdict.failure(Status.PARSE_ERROR, talk.error, extra=extra, **common)
    score, structured = talk.value
    extra = {} if definition.schema is None else {"structured": structured}
    return Verdict(score=score, status=Status.OK, extra=extra, **common)


@dataclass(frozen=True)
class Conversation:
    """How a conversation with the judge ended: the transport's ``failure``, or the
    last answer's ``text`` with what the reader made of it (``value``), or the parse
    ``error`` that outlived the correction turns; with the attempts, correction turns,
    usage and model of every call in it."""

    attempts: int
    format_retries: int
    usage: dict[str, Any]
    model: str | None
    failure: dict[str, Any] | None = None
    text: str | None = None
    value: Any = None
    error: str | None = None


async def converse(prompt: JudgePrompt, transport: Transport, read: Callable[[Any], Any],
                   correction: Callable[[str], str], *, turns: int,
                   time_left: Callable[[], float]) -> Conversation:
    """Call ``transport`` until ``read(completion)`` returns (it raises ScoreParseError
    for an answer that does not read), sending up to ``turns`` correction turns, each
    ``correction(error)``."""
    attempts = corrections = 0
    usage: dict[str, Any] = {"input_tokens": None, "output_tokens": None, "cost_usd": None,
                             "cache_read_tokens": None, "cache_write_tokens": None}
    model = None
    while True:
        outcome = await transport(prompt)
        attempts += outcome.attempts
        if outcome.failure is not None:
            return Conversation(attempts, corrections, usage, model, failure=outcome.failure)
        completion = outcome.completion
        model = completion.model or model
        _add(usage, completion)
        try:
            value = read(completion)
        except ScoreParseError as exc:
            if corrections >= turns or time_left() <= 0:
                return Conversation(attempts, corrections, usage, model,
                                    text=completion.text, error=str(exc))
            corrections += 1
            prompt = dataclasses.replace(prompt, turns=(
                *prompt.turns, {"role": "assistant", "content": completion.text},
                {"role": "user", "content": correction(str(exc))}))
            continue
        return Conversation(attempts, corrections, usage, model, text=completion.text,
                            value=value)


def _read(definition: JudgeDefinition, completion: Any) -> tuple[float, bool]:
    try:
        return definition.read(completion.text, completion.structured)
    except ScoreParseError:
        raise
    except Exception as exc:  # a parser bug is this answer's parse_error, not a crash
        raise ScoreParseError(f"the {definition.parser} parser failed: "
                              f"{type(exc).__name__}: {exc}") from None


def _combine(definition: JudgeDefinition, verdicts: list[Verdict]) -> Verdict:
    scores = [v.score for v in verdicts if v.ok]
    total = {"attempts": sum(v.attempts for v in verdicts),
             "format_retries": sum(v.format_retries for v in verdicts),
             "input_tokens": _sum(v.input_tokens for v in verdicts),
             "output_tokens": _sum(v.output_tokens for v in verdicts),
             "cost_usd": _sum(v.cost_usd for v in verdicts),
             "cache_read_tokens": _sum(v.cache_read_tokens for v in verdicts),
             "cache_write_tokens": _sum(v.cache_write_tokens for v in verdicts),
             "model": next((v.model for v in verdicts if v.model), None)}
    samples = [{"score": v.score, "status": v.status.value, "error": v.error,
                **({"structured": v.extra["structured"]} if "structured" in v.extra else {})}
               for v in verdicts]
    extra = {"samples": samples, "aggregate": definition.aggregate,
             "spread": round(max(scores) - min(scores), 6) if scores else None}
    last = verdicts[-1]
    if len(scores) * 2 <= len(verdicts):
        failed = [v for v in verdicts if not v.ok]
        status = Counter(v.status for v in failed).most_common(1)[0][0]
        error = (f"{len(failed)} of {len(verdicts)} samples failed; first: "
                 f"{failed[0].status.value}: {failed[0].error}")
        return Verdict.failure(status, error, raw=last.raw, extra=extra, **total)
    return Verdict(score=aggregate_scores(definition.aggregate, scores), status=Status.OK,
                   raw=last.raw, extra=extra, **total)


def aggregate_scores(how: str, scores: list[float]) -> float:
    """``scores`` (ok ones, on [0, 1]) combined by ``how``: mean, median or majority."""
    if how == "median":
        return float(statistics.median(scores))
    if how == "majority":
        # The most frequent score; a tie goes to the lowest of the tied (no reward is
        # inflated by a split vote).
        counts = Counter(scores)
        top = max(counts.values())
        return min(s for s, n in counts.items() if n == top)
    return min(1.0, max(0.0, statistics.fmean(scores)))


def _add(usage: dict[str, Any], completion: Any) -> None:
    for name, so_far in list(usage.items()):
        value = getattr(completion, name)
        if value is not None:
            usage[name] = (so_far or 0) + value


def _sum(values: Any) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None
