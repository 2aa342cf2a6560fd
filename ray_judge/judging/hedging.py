"""Hedged calls: a judge call that runs long gets a second, identical call.

A synchronous RL step waits for its last reward, and provider latency has a heavy tail:
the step's time is set by its slowest judge call. The remedy is the hedged request ("The
Tail at Scale", Dean and Barroso, CACM 2013): when a call has run longer than most calls
take, send the same call again (another connection, another CLI process, or the backend
``LLM_JUDGE_HEDGE_TO`` names), take the first ok answer and cancel the other. Cancelling
closes the HTTP request, or kills the CLI's process group as a timeout does.

:class:`Hedger` is the worker's half: it keeps each judge's recent call latency per
backend (:class:`LatencyWindow`), decides when a call is late (1.5 x the 90th percentile,
never below a floor; earlier when the attempt's deadline is near), and races the two
calls. Whether a hedge may be sent at all is the judge's decision, asked through
:class:`HedgePermits`: it holds the global in-flight, rate and token limits and the share
cap, so a hedge counts like any call. :class:`HedgeNote` is what a request's Verdict says
about it (``extra["hedged"]``); :class:`HedgeReport` what the judge learns of each hedge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..backends.base import Backend, Completion
from ..config import JudgeConfig
from ..errors import BackendCallError
from ..verdict import Status

__all__ = ["HedgeNote", "HedgePermits", "HedgeReport", "Hedger", "LatencyWindow"]

logger = logging.getLogger(__name__)

#: The adaptive delay: this multiple of this percentile of recent call latency.
MULTIPLE = 1.5
PERCENTILE = 0.9
#: Calls of a judge on a backend that must have answered before it is hedged adaptively.
MIN_SAMPLES = 20
#: A deadline-near attempt is hedged when less than this multiple of the median call
#: latency is left before its timeout.
NEAR_DEADLINE = 1.5
#: Seconds without hedges on a backend after it said "rate limited" (unless it said when).
THROTTLE_S = 30.0
_THROTTLING = {Status.RATE_LIMITED, Status.USAGE_LIMITED, Status.BUDGET_EXHAUSTED}

Attempt = Callable[[Backend, float], Awaitable[Completion]]


class LatencyWindow:
    """The latest ``size`` call latencies of one judge on one backend.

    Percentiles are recomputed at most every ``every`` new samples: a hedge decision per
    call must cost next to nothing.
    """

    def __init__(self, size: int = 256, every: int = 16) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._every = every
        self._since = every
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._values)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)
        self._since += 1

    def percentile(self, p: float) -> float:
        """The ``p`` quantile (0..1, nearest rank) of the window; ValueError when empty."""
        if not self._values:
            raise ValueError("no latencies recorded yet")
        if self._since >= self._every or len(self._sorted) != len(self._values):
            self._sorted = sorted(self._values)
            self._since = 0
        index = min(len(self._sorted) - 1, max(0, round(p * (len(self._sorted) - 1))))
        return self._sorted[index]


@dataclass(frozen=True)
class HedgeReport:
    """One hedge, as the judge's permits learn of it when the race is over.

    ``spec`` is the backend the hedge went to (its permit); ``winner`` is ``"first"``,
    ``"hedge"``, ``"none"`` (both failed) or ``"unsent"`` (the first call answered while
    the permit was being asked for: the permit comes back unused). The losing call's
    tokens and cost count when the provider finished it anyway (``loser_spec`` says
    whose they are); a loser cancelled in time cost nothing we can see (``cancelled``).
    """

    spec: str
    winner: str
    loser_spec: str | None = None
    loser_tokens: int = 0
    loser_cost_usd: float = 0.0
    cancelled: bool = False


class HedgePermits(Protocol):
    """The judge's side: whether a hedge may go out now, and what came of it."""

    async def acquire(self, spec: str) -> bool:
        """True when a hedge to ``spec`` may start: it then holds one of the backend's
        in-flight slots and one request of its rate until :meth:`release`."""

    def release(self, report: HedgeReport) -> None:
        """Give back the slot taken for ``report.spec`` and count the outcome."""


@dataclass
class HedgeNote:
    """What one request's calls did about hedging: its Verdict's ``extra["hedged"]``.

    ``sent`` hedges went out, ``won`` of them answered first; ``after_s`` is the delay
    of the latest; ``backend`` the spec whose answer the Verdict holds when a hedge to
    another backend won.
    """

    sent: int = 0
    won: int = 0
    after_s: float | None = None
    backend: str | None = None

    def as_extra(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["winner"] = "hedge" if self.won else "first"
        return out


class Hedger:
    """Hedges one worker's calls. See the module docstring.

    Args:
        config: ``hedge``, ``hedge_after_s``, ``hedge_min_delay_s`` are read here.
        permits: the judge's permits; None (or ``LLM_JUDGE_HEDGE=off``): never hedge.
        hedge_backend: returns the backend hedges go to (``LLM_JUDGE_HEDGE_TO``), ready
            to call; None: the call's own backend.
        clock: monotonic seconds.
    """

    def __init__(self, config: JudgeConfig, permits: HedgePermits | None, *,
                 hedge_backend: Callable[[], Awaitable[Backend]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.permits = permits  # may be given later (a judge made after its workers)
        self.on = config.hedge
        self.fixed = config.hedge_after_s
        self.floor = config.hedge_min_delay_s
        self._hedge_backend = hedge_backend
        self._clock = clock
        self._windows: dict[tuple[str, str], LatencyWindow] = {}
        self._throttled: dict[str, float] = {}  # backend -> monotonic time hedges resume
        self._losers: set[asyncio.Task[Completion]] = set()

    def __repr__(self) -> str:
        return f"Hedger(enabled={self.enabled}, windows={len(self._windows)})"

    @property
    def enabled(self) -> bool:
        return self.on and self.permits is not None

    def window(self, judge: str, spec: str) -> LatencyWindow:
        key = (judge, spec)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = LatencyWindow()
        return window

    def delay(self, judge: str, spec: str, timeout: float) -> float | None:
        """Seconds after which a call of ``judge`` on ``spec`` with ``timeout`` is
        hedged; None: not this call (off, too few latencies known, throttled, or its
        timeout comes first)."""
        if not self.enabled or self._clock() < self._throttled.get(spec, 0.0):
            return None
        window = self.window(judge, spec)
        known = len(window) >= MIN_SAMPLES
        if self.fixed is not None:
            delay = self.fixed
        elif known:
            delay = max(self.floor, MULTIPLE * window.percentile(PERCENTILE))
        else:
            return None
        if known:  # a deadline-near attempt is hedged while a typical call still fits
            near = timeout - NEAR_DEADLINE * window.percentile(0.5)
            if 0 < near < delay:
                delay = near
        return delay if delay < timeout else None

    def _warming(self, judge: str, spec: str) -> bool:
        """Adaptive hedging that waits only for latencies to be known."""
        return (self.enabled and self.fixed is None
                and len(self.window(judge, spec)) < MIN_SAMPLES
                and self._clock() >= self._throttled.get(spec, 0.0))

    def throttle(self, spec: str, error: BaseException | None) -> None:
        """No hedges to ``spec`` for a while when ``error`` says it is rate limited."""
        if isinstance(error, BackendCallError) and error.status in _THROTTLING:
            pause = error.retry_after if error.retry_after else THROTTLE_S
            self._throttled[spec] = max(self._throttled.get(spec, 0.0),
                                        self._clock() + min(pause, 10 * THROTTLE_S))

    async def call(self, judge: str, backend: Backend, attempt: Attempt, timeout: float,
                   note: HedgeNote) -> Completion:
        """``attempt(backend, timeout)``, hedged when it runs late; the first ok answer.

        Raises what the call raised when no answer is ok (the first call's error when
        both failed). Cancelling this cancels both calls.
        """
        spec = str(backend.spec)
        start = self._clock()
        delay = self.delay(judge, spec, timeout)
        warming = delay is None and self._warming(judge, spec)
        if delay is None and not warming:  # the common case: no task, no wait
            try:
                completion = await attempt(backend, timeout)
            except BackendCallError as exc:
                self.throttle(spec, exc)
                raise
            self.window(judge, spec).add(self._clock() - start)
            return completion
        first = asyncio.ensure_future(attempt(backend, timeout))
        try:
            while delay is None and warming:
                # Too few latencies known when it started (a run's first step): look again
                # as the calls that started with it answer.
                await asyncio.wait({first}, timeout=max(self.floor, 0.05))
                if first.done():
                    return self._finished(judge, spec, first, start)
                delay = self.delay(judge, spec, timeout)
                warming = delay is None and self._warming(judge, spec)
            if delay is not None:
                await asyncio.wait({first}, timeout=max(0.0, delay - (self._clock() - start)))
            other = None if first.done() or delay is None else await self._hedge_to(backend)
            if other is not None and first.done():  # it answered while we asked
                self._release(HedgeReport(str(other.spec), "unsent"))
                other = None
            if other is None:
                await asyncio.wait({first})
                return self._finished(judge, spec, first, start)
        except BaseException:
            first.cancel()
            raise
        assert delay is not None
        note.sent += 1
        note.after_s = round(delay, 3)
        return await self._race(judge, (backend, first, start), other, attempt=attempt,
                                left=timeout - (self._clock() - start), note=note)

    async def _hedge_to(self, backend: Backend) -> Backend | None:
        """The backend a hedge of a call on ``backend`` goes to, holding its permit;
        None: no hedge this time."""
        assert self.permits is not None
        try:
            other = (await self._hedge_backend() if self._hedge_backend is not None
                     else backend)
            if await self.permits.acquire(str(other.spec)):
                return other
        except Exception as exc:  # the judge restarting, a hedge backend that cannot
            logger.debug("no hedge for a call on %s: %r", backend.spec, exc)  # start
        return None

    async def _race(self, judge: str, first_call: tuple[Backend, asyncio.Task[Completion], float],
                    other: Backend, *, attempt: Attempt, left: float,
                    note: HedgeNote) -> Completion:
        backend, first, start = first_call
        spec, other_spec = str(backend.spec), str(other.spec)
        hedge_start = self._clock()
        second = asyncio.ensure_future(attempt(other, max(left, 0.001)))
        calls = {first: (spec, start), second: (other_spec, hedge_start)}
        pending: set[asyncio.Task[Completion]] = {first, second}
        winner: asyncio.Task[Completion] | None = None
        try:
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in (first, second):  # the first call wins a tie
                    if task in done and task.exception() is None:
                        winner = task
                        break
        finally:
            for task in pending:
                task.cancel()
                self._losers.add(task)
                task.add_done_callback(self._forget_loser)
        report = self._report(calls, winner, cancelled=bool(pending))
        self._learn(judge, calls, first)
        self._release(report)
        if winner is None:
            error = first.exception() if not first.cancelled() else second.exception()
            assert error is not None
            raise error
        if winner is second:
            note.won += 1
            if other_spec != spec:
                note.backend = other_spec
        return winner.result()

    def _learn(self, judge: str, calls: dict[asyncio.Task[Completion], tuple[str, float]],
               first: asyncio.Task[Completion]) -> None:
        """The race's latencies (a first call cancelled while running: a lower bound)
        and its rate-limit answers."""
        for task, (task_spec, began) in calls.items():
            if task.done() and not task.cancelled():
                if task.exception() is None:
                    self.window(judge, task_spec).add(self._clock() - began)
                else:
                    self.throttle(task_spec, task.exception())
            elif task is first:
                self.window(judge, task_spec).add(self._clock() - began)

    def _release(self, report: HedgeReport) -> None:
        assert self.permits is not None
        try:
            self.permits.release(report)
        except Exception:  # counting must never cost a caller its answer
            logger.exception("releasing a hedge permit failed")

    def _report(self, calls: dict[asyncio.Task[Completion], tuple[str, float]],
                winner: asyncio.Task[Completion] | None, *, cancelled: bool) -> HedgeReport:
        first, second = calls
        hedge_spec = calls[second][0]
        if winner is None:
            return HedgeReport(hedge_spec, "none")
        loser = second if winner is first else first
        tokens, cost = 0, 0.0
        if loser.done() and not loser.cancelled() and loser.exception() is None:
            done = loser.result()
            tokens = (done.input_tokens or 0) + (done.output_tokens or 0)
            cost = done.cost_usd or 0.0
        return HedgeReport(hedge_spec, "first" if winner is first else "hedge",
                           loser_spec=calls[loser][0], loser_tokens=tokens,
                           loser_cost_usd=cost, cancelled=cancelled)

    def _finished(self, judge: str, spec: str, task: asyncio.Task[Completion],
                  start: float) -> Completion:
        error = task.exception()
        if error is not None:
            self.throttle(spec, error)
            raise error
        self.window(judge, spec).add(self._clock() - start)
        return task.result()

    def _forget_loser(self, task: asyncio.Task[Completion]) -> None:
        self._losers.discard(task)
        if not task.cancelled():
            with contextlib.suppress(BaseException):
                task.exception()  # retrieved: a loser's error is not news
