"""Judging over any transport: a request in, exactly one Verdict out.

:class:`JudgeRunner` takes a :class:`~ray_judge.backends.Backend` (a transport: one
attempt at one rendered prompt) and the judges it may be asked for. It renders the
request with its judge definition, retries the transport politely within the request's
deadline (exponential backoff with full jitter, Retry-After honoured), and always returns
a :class:`~ray_judge.verdict.Verdict`: it never raises for a failed call. Reading the
answer, correction turns and samples are :mod:`ray_judge.judging.judgement`'s; groups
and pairs are :mod:`ray_judge.judging.groups.judgement`'s.

Example::

    runner = JudgeRunner(create_backend(BackendSpec.parse("litellm:openai/gpt-4o"), config),
                         JudgeCatalog.build(config))
    verdict = await runner.judge(JudgeRequest("What is 2+2?", "4"))
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend, Completion
from ..config import JudgeConfig
from ..errors import BackendCallError, BackendTimeoutError, RubricError
from ..prompt import JudgePrompt
from ..verdict import GroupRequest, JudgeRequest, Status, Verdict
from .catalog import JudgeCatalog
from .definition import JudgeDefinition
from .groups.judgement import judge_group
from .hedging import HedgeNote, Hedger
from .judgement import Outcome, judge_request
from .rubric import Rubric, load_rubric

__all__ = ["JudgeRunner", "RetryPolicy"]

logger = logging.getLogger(__name__)

# Grace on top of an attempt's own timeout before the shared layer gives up on a backend
# that failed to enforce it (a bug, but one that must not hang a training run).
_SAFETY_GRACE_S = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded, polite retries: exponential backoff with full jitter, Retry-After honoured."""

    max_attempts: int = 4
    timeout_s: float = 120.0
    deadline_s: float = 300.0
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    @classmethod
    def from_config(cls, config: JudgeConfig) -> RetryPolicy:
        return cls(config.max_attempts, config.timeout_s, config.deadline_s,
                   config.backoff_s, config.max_backoff_s)

    def delay(self, attempt: int, retry_after: float | None, rng: Callable[[], float]) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        jitter = rng() * min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return max(jitter, retry_after or 0.0)


class JudgeRunner:
    """Judges requests through one backend; shared by every backend, the fake included.

    Args:
        backend: the transport.
        judges: the judge catalog (the pool hands over its own), or definitions to add
            to the configured judges file.
        rubric: the default judge's rubric; by default the configured one.
        hedger: hedges calls that run late (:mod:`ray_judge.judging.hedging`); None:
            never.
        sleep, clock, rng: injected so that tests never wait.
    """

    def __init__(
        self,
        backend: Backend,
        judges: JudgeCatalog | Iterable[JudgeDefinition] = (),
        *,
        rubric: Rubric | None = None,
        hedger: Hedger | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        config: JudgeConfig = backend.config
        self.backend = backend
        self.rubric = rubric if rubric is not None else load_rubric(config)
        self.judges = (judges if isinstance(judges, JudgeCatalog)
                       else JudgeCatalog.build(config, rubric=self.rubric, judges=judges))
        self.policy = RetryPolicy.from_config(config)
        self.hedger = hedger
        self._sleep = sleep
        self._clock = clock
        self._rng = rng

    def __repr__(self) -> str:
        return f"JudgeRunner({self.backend!r})"

    async def judge(self, request: JudgeRequest, *, deadline: float | None = None) -> Verdict:
        """Grade one request. Never raises for a failed call; the Verdict says what happened.

        ``deadline`` is an absolute time on this backend's clock; by default the
        configured per-request budget from now. The request's judge definition decides
        the prompt, how the answer is read, correction turns and samples
        (:mod:`ray_judge.judging.judgement`); this method adds the transport.
        """
        start = self._clock()
        deadline = start + self.policy.deadline_s if deadline is None else deadline
        base = {"backend": str(self.backend.spec), "model": self.backend.model,
                "metadata": request.metadata}
        try:
            definition = self.judges.get(request.judge)
            # render() applies request.rubric (validated, cached) when the request has one
            prompt = definition.render(request)
        except (RubricError, ValueError, TypeError) as exc:
            return Verdict.failure(Status.INVALID_INPUT, str(exc), judge=request.judge or
                                   "default", **base)

        note = HedgeNote()

        async def transport(prompt: JudgePrompt) -> Outcome:
            return await self._call(prompt, deadline, definition.name, note)

        verdict = await judge_request(definition, prompt, transport,
                                      time_left=lambda: deadline - self._clock())
        return _hedged(verdict, note).with_(
            latency_s=self._clock() - start, backend=note.backend or base["backend"],
            model=verdict.model or self.backend.model, metadata=request.metadata)

    async def judge_group(self, request: GroupRequest, *,
                          deadline: float | None = None) -> tuple[Verdict, ...]:
        """Grade a group (or a pair) in one call: one Verdict per response, in its order.

        Never raises for a failed call. With the judge's ``fallback = "pointwise"``, a
        group whose answer does not read (after the correction turns) is judged one
        response at a time by the ``default`` judge, within the same deadline.
        """
        start = self._clock()
        deadline = start + self.policy.deadline_s if deadline is None else deadline
        base = {"backend": str(self.backend.spec), "metadata": request.metadata}

        note = HedgeNote()
        name = request.judge or "group"

        async def transport(prompt: JudgePrompt) -> Outcome:
            return await self._call(prompt, deadline, name, note)

        try:
            definition = self.judges.get(request.judge)
            verdicts = await judge_group(  # a panel's members: each its own shuffle
                definition, request, transport, time_left=lambda: deadline - self._clock(),
                salt=base["backend"] if definition.panel else "")
        except (RubricError, ValueError, TypeError) as exc:
            failed = Verdict.failure(Status.INVALID_INPUT, str(exc), model=self.backend.model,
                                     **base)
            return tuple(failed for _ in request.responses)
        if definition.fallback == "pointwise" and verdicts[0].status is Status.PARSE_ERROR:
            alone = await asyncio.gather(*(self.judge(request.member(i), deadline=deadline)
                                           for i in range(len(request.responses))))
            verdicts = tuple(_standing_in(one, group)
                             for one, group in zip(alone, verdicts, strict=True))
        if note.backend is not None:
            base["backend"] = note.backend
        return tuple(_hedged(v, note).with_(latency_s=self._clock() - start,
                                            model=v.model or self.backend.model, **base)
                     for v in verdicts)

    async def _call(self, prompt: JudgePrompt, deadline: float, judge: str = "default",
                    note: HedgeNote | None = None) -> Outcome:
        """One answer for ``prompt`` with bounded, polite transport retries. Hedges
        sent for it (``note``) count as attempts."""
        note = HedgeNote() if note is None else note
        hedged_before = note.sent
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._clock()
            if remaining <= 0:
                return Outcome(attempt - 1 + note.sent - hedged_before, failure={
                    "status": Status.TIMEOUT, "error": f"deadline of "
                    f"{self.policy.deadline_s:g}s passed before attempt {attempt}"})
            try:
                completion = await self._attempt(prompt, min(self.policy.timeout_s, remaining),
                                                 judge, note)
            except BackendCallError as exc:
                failure = exc
            except Exception as exc:  # a bug in a backend must not kill the caller
                logger.exception("unexpected error in %s", self.backend)
                failure = BackendCallError(f"unexpected {type(exc).__name__}: {exc}")
            else:
                return Outcome(attempt + note.sent - hedged_before, completion=completion)

            wait = self.policy.delay(attempt, failure.retry_after, self._rng)
            out_of_time = self._clock() + wait >= deadline
            if not failure.retryable or attempt >= self.policy.max_attempts or out_of_time:
                return Outcome(attempt + note.sent - hedged_before, failure={
                    "status": failure.status, "error": str(failure) or type(failure).__name__,
                    "raw": failure.raw, "retry_after": failure.retry_after,
                    "resets_at": failure.resets_at})
            logger.debug("%s attempt %d failed (%s); retrying in %.2fs", self.backend, attempt,
                         failure.status, wait)
            await self._sleep(wait)

    async def _attempt(self, prompt: JudgePrompt, timeout: float, judge: str,
                       note: HedgeNote) -> Completion:
        if self.hedger is None or not self.hedger.enabled:
            return await self._once(self.backend, prompt, timeout)
        return await self.hedger.call(
            judge, self.backend, lambda backend, left: self._once(backend, prompt, left),
            timeout, note)

    @staticmethod
    async def _once(backend: Backend, prompt: JudgePrompt, timeout: float) -> Completion:
        try:
            return await asyncio.wait_for(backend.complete(prompt, timeout=timeout),
                                          timeout + _SAFETY_GRACE_S)
        except asyncio.TimeoutError:
            raise BackendTimeoutError(
                f"no answer within {timeout:.1f}s", backend=str(backend.spec)) from None


def _hedged(verdict: Verdict, note: HedgeNote) -> Verdict:
    """``verdict`` saying how its calls were hedged, when they were."""
    if not note.sent:
        return verdict
    return verdict.with_(extra={**verdict.extra, "hedged": note.as_extra()})


def _standing_in(alone: Verdict, member: Verdict) -> Verdict:
    """A pointwise Verdict in place of ``member`` of a group call that did not read. It
    carries the member's share of that call's tokens and cost and, on the member shown
    first, the call's attempts and correction turns, so that sums over Verdicts (and
    the pool's totals) still count what the failed call spent, once."""
    extra = {**alone.extra, "fallback": "pointwise", "group_error": member.error,
             "group": member.extra["group"]}
    changes: dict[str, Any] = {
        name: None if mine is None and theirs is None else (mine or 0) + (theirs or 0)
        for name, mine, theirs in (
            ("input_tokens", alone.input_tokens, member.input_tokens),
            ("output_tokens", alone.output_tokens, member.output_tokens),
            ("cost_usd", alone.cost_usd, member.cost_usd),
            ("cache_read_tokens", alone.cache_read_tokens, member.cache_read_tokens),
            ("cache_write_tokens", alone.cache_write_tokens, member.cache_write_tokens))}
    if member.counts_call:
        extra["group_call"] = {"attempts": member.attempts,
                               "format_retries": member.format_retries}
        changes.update(attempts=alone.attempts + member.attempts,
                       format_retries=alone.format_retries + member.format_retries)
    return alone.with_(extra=extra, **changes)
