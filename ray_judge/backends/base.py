"""The backend interface: one attempt (:meth:`Backend.complete`), and the judging around it.

A backend implements only ``complete``: send a system and a user message (and any later
turns), return the model's text or raise a :class:`~ray_judge.errors.BackendCallError`
subclass that says what went wrong. :meth:`Backend.judge` is shared by every backend: it
renders the prompt with the request's judge definition, retries politely within the
request's deadline, and always returns a :class:`~ray_judge.verdict.Verdict` (it never
raises for a failed call); reading the answer, correction turns and samples are
:mod:`ray_judge.judging.judgement`'s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config import JudgeConfig
from ..errors import BackendCallError, BackendTimeoutError, RubricError
from ..judging.catalog import JudgeCatalog
from ..judging.definition import JudgeDefinition
from ..judging.groups.judgement import judge_group
from ..judging.judgement import Outcome, judge_request
from ..judging.rubric import Rubric, load_rubric
from ..prompt import JudgePrompt
from ..spec import BackendSpec
from ..verdict import GroupRequest, JudgeRequest, Status, Verdict

__all__ = ["Backend", "Completion", "RetryPolicy"]

logger = logging.getLogger(__name__)

# Grace on top of an attempt's own timeout before the shared layer gives up on a backend
# that failed to enforce it (a bug, but one that must not hang a training run).
_SAFETY_GRACE_S = 5.0


@dataclass(frozen=True)
class Completion:
    """The model's answer to one attempt."""

    text: str
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    #: the structured output (parsed JSON) when the prompt asked for a schema and the
    #: backend delivered one; ``None`` means read ``text`` with the judge's parser
    structured: Any = None


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


class Backend(ABC):
    """A judge backend. Subclasses implement :meth:`complete` and maybe :meth:`aclose`."""

    kind: ClassVar[str]

    def __init__(
        self,
        spec: BackendSpec,
        config: JudgeConfig,
        *,
        rubric: Rubric | None = None,
        judges: JudgeCatalog | Iterable[JudgeDefinition] = (),
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.spec = spec
        self.config = config
        self.model = spec.model(config.ccode_models)
        self.rubric = rubric if rubric is not None else load_rubric(config)
        # The pool hands over the judge's catalog; a backend built alone reads the
        # configured judges file, plus any definitions given.
        self.judges = (judges if isinstance(judges, JudgeCatalog)
                       else JudgeCatalog.build(config, rubric=self.rubric, judges=judges))
        self.policy = RetryPolicy.from_config(config)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng

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

    async def judge(self, request: JudgeRequest, *, deadline: float | None = None) -> Verdict:
        """Grade one request. Never raises for a failed call; the Verdict says what happened.

        ``deadline`` is an absolute time on this backend's clock; by default the
        configured per-request budget from now. The request's judge definition decides
        the prompt, how the answer is read, correction turns and samples
        (:mod:`ray_judge.judging.judgement`); this method adds the transport.
        """
        start = self._clock()
        deadline = start + self.policy.deadline_s if deadline is None else deadline
        base = {"backend": str(self.spec), "model": self.model, "metadata": request.metadata}
        try:
            definition = self.judges.get(request.judge)
            # render() applies request.rubric (validated, cached) when the request has one
            prompt = definition.render(request)
        except (RubricError, ValueError, TypeError) as exc:
            return Verdict.failure(Status.INVALID_INPUT, str(exc), judge=request.judge or
                                   "default", **base)

        async def transport(prompt: JudgePrompt) -> Outcome:
            return await self._call(prompt, deadline)

        verdict = await judge_request(definition, prompt, transport,
                                      time_left=lambda: deadline - self._clock())
        return verdict.with_(latency_s=self._clock() - start, backend=base["backend"],
                             model=verdict.model or self.model, metadata=request.metadata)

    async def judge_group(self, request: GroupRequest, *,
                          deadline: float | None = None) -> tuple[Verdict, ...]:
        """Grade a group (or a pair) in one call: one Verdict per response, in its order.

        Never raises for a failed call. With the judge's ``fallback = "pointwise"``, a
        group whose answer does not read (after the correction turns) is judged one
        response at a time by the ``default`` judge, within the same deadline.
        """
        start = self._clock()
        deadline = start + self.policy.deadline_s if deadline is None else deadline
        base = {"backend": str(self.spec), "metadata": request.metadata}

        async def transport(prompt: JudgePrompt) -> Outcome:
            return await self._call(prompt, deadline)

        try:
            definition = self.judges.get(request.judge)
            verdicts = await judge_group(definition, request, transport,
                                         time_left=lambda: deadline - self._clock())
        except (RubricError, ValueError, TypeError) as exc:
            failed = Verdict.failure(Status.INVALID_INPUT, str(exc), model=self.model, **base)
            return tuple(failed for _ in request.responses)
        if definition.fallback == "pointwise" and verdicts[0].status is Status.PARSE_ERROR:
            alone = await asyncio.gather(*(self.judge(request.member(i), deadline=deadline)
                                           for i in range(len(request.responses))))
            verdicts = tuple(_standing_in(one, group)
                             for one, group in zip(alone, verdicts, strict=True))
        return tuple(v.with_(latency_s=self._clock() - start, model=v.model or self.model,
                             **base) for v in verdicts)

    async def _call(self, prompt: JudgePrompt, deadline: float) -> Outcome:
        """One answer for ``prompt`` with bounded, polite transport retries."""
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._clock()
            if remaining <= 0:
                return Outcome(attempt - 1, failure={
                    "status": Status.TIMEOUT, "error": f"deadline of "
                    f"{self.policy.deadline_s:g}s passed before attempt {attempt}"})
            try:
                completion = await self._attempt(prompt, min(self.policy.timeout_s, remaining))
            except BackendCallError as exc:
                failure = exc
            except Exception as exc:  # a bug in a backend must not kill the caller
                logger.exception("unexpected error in %s", self)
                failure = BackendCallError(f"unexpected {type(exc).__name__}: {exc}")
            else:
                return Outcome(attempt, completion=completion)

            wait = self.policy.delay(attempt, failure.retry_after, self._rng)
            out_of_time = self._clock() + wait >= deadline
            if not failure.retryable or attempt >= self.policy.max_attempts or out_of_time:
                return Outcome(attempt, failure={
                    "status": failure.status, "error": str(failure) or type(failure).__name__,
                    "raw": failure.raw, "retry_after": failure.retry_after,
                    "resets_at": failure.resets_at})
            logger.debug("%s attempt %d failed (%s); retrying in %.2fs", self, attempt,
                         failure.status, wait)
            await self._sleep(wait)

    async def _attempt(self, prompt: JudgePrompt, timeout: float) -> Completion:
        try:
            return await asyncio.wait_for(self.complete(prompt, timeout=timeout),
                                          timeout + _SAFETY_GRACE_S)
        except asyncio.TimeoutError:
            raise BackendTimeoutError(
                f"no answer within {timeout:.1f}s", backend=str(self.spec)) from None


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
            ("cost_usd", alone.cost_usd, member.cost_usd))}
    if member.counts_call:
        extra["group_call"] = {"attempts": member.attempts,
                               "format_retries": member.format_retries}
        changes.update(attempts=alone.attempts + member.attempts,
                       format_retries=alone.format_retries + member.format_retries)
    return alone.with_(extra=extra, **changes)
