"""The judge's half of hedged calls: whether a hedge may go out now, and what hedges cost.

Workers hedge their own late calls (:mod:`ray_judge.judging.hedging`), but every hedge
first asks the judge for a permit, because what bounds hedging is global:

* the share cap: hedges stay within ``LLM_JUDGE_HEDGE_SHARE`` of the requests dispatched
  over the last minute (counted as they are dispatched, so the first step of a run can
  already be hedged);
* the backend's limits: a hedge takes one of its in-flight slots and one request of its
  rate like any call, and none goes out while requests are queued for a slot or the
  tokens-per-minute budget is spent;
* its health: no hedges to a backend that answered "rate limited" or "usage limited"
  lately, so a 429 storm is not made worse.

:class:`HedgeBudget` holds these and the counts ``status()["hedging"]`` shows: hedges
sent and won, permits refused and why, and what losing calls cost when the provider
finished them anyway (tokens and dollars, counted apart and charged to the spend budget).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ..config import JudgeConfig
from ..judging.hedging import THROTTLE_S, HedgeReport
from ..spec import BackendSpec
from ..verdict import Status, Verdict
from .limits import BackendLimits

__all__ = ["WINDOW_S", "HedgeBudget"]

logger = logging.getLogger(__name__)

#: The share cap's rolling window.
WINDOW_S = 60.0
_THROTTLING = {Status.RATE_LIMITED, Status.USAGE_LIMITED, Status.BUDGET_EXHAUSTED}


class HedgeBudget:
    """Hedge permits for one judge. See the module docstring.

    Args:
        config: ``hedge`` and ``hedge_share``.
        limits: the dispatcher's per-backend limits (the same slots, rate and tokens).
        queued: how many requests wait in the dispatcher's queue.
        charge: ``charge(spec, usd)`` counts a losing call's cost in the spend budget.
        on_release / on_refuse: told of every hedge that is over and every refusal (the
            metrics); an error there never reaches a worker.
        clock: monotonic seconds.
    """

    def __init__(self, config: JudgeConfig, limits: BackendLimits, queued: Callable[[], int],
                 *, charge: Callable[[str, float], None] = lambda spec, usd: None,
                 on_release: Callable[[HedgeReport], None] = lambda report: None,
                 on_refuse: Callable[[str], None] = lambda reason: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = config.hedge
        self.share = config.hedge_share
        self.limits = limits
        self._queued = queued
        self._charge = charge
        self._on_release = on_release
        self._on_refuse = on_refuse
        self._clock = clock
        self._dispatched: deque[list[float]] = deque()  # [second, requests]
        self._dispatched_total = 0.0
        self._granted: deque[float] = deque()
        self._throttled: dict[str, float] = {}
        self._specs: dict[str, BackendSpec] = {}
        self.holding: Counter[str] = Counter()  # permits out, per backend
        self.sent = 0
        self.won = 0
        self.failed = 0
        self.cancelled = 0
        self.loser_tokens = 0
        self.loser_cost_usd = 0.0
        self.refused: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"HedgeBudget(share={self.share}, sent={self.sent}, won={self.won})"

    # -- what the judge tells it -------------------------------------------------------

    def dispatched(self, n: int) -> None:
        """``n`` requests went to a worker now."""
        now = self._clock()
        second = float(int(now))
        if self._dispatched and self._dispatched[-1][0] == second:
            self._dispatched[-1][1] += n
        else:
            self._dispatched.append([second, float(n)])
        self._dispatched_total += n

    def observe(self, verdict: Verdict) -> None:
        """A Verdict the pool served: "rate limited" stops hedges to its backend a while."""
        if verdict.status in _THROTTLING and verdict.backend:
            pause = min(verdict.retry_after or THROTTLE_S, 10 * THROTTLE_S)
            until = self._clock() + pause
            self._throttled[verdict.backend] = max(self._throttled.get(verdict.backend, 0.0),
                                                   until)

    # -- the permits -------------------------------------------------------------------

    async def acquire(self, spec: str) -> bool:
        """A permit for one hedge to ``spec`` (see the module docstring), or False."""
        reason = self._refusal(spec)
        if reason is None:
            slots, rate, budget = self.limits.of(self._spec(spec))
            if budget.wait_s() > 0:
                reason = "tokens"
            elif rate.available() < 1:
                reason = "rate"
            elif slots.try_take(1) == 0:
                reason = "in_flight"
            else:
                await rate.take(1, 0)
                self._granted.append(self._clock())
                self.holding[spec] += 1
                return True
        self.refused[reason] += 1
        _tell(self._on_refuse, reason)
        return False

    def release(self, report: HedgeReport) -> None:
        """Give back the slot of a hedge that is over, and count what came of it."""
        if self.holding[report.spec] > 0:
            self.holding[report.spec] -= 1
            slots, _, _ = self.limits.of(self._spec(report.spec))
            slots.give_back(1)
        _tell(self._on_release, report)
        if report.winner == "unsent":
            if self._granted:
                self._granted.pop()
            return
        self.sent += 1
        self.won += report.winner == "hedge"
        self.failed += report.winner == "none"
        self.cancelled += report.cancelled
        if report.loser_spec is not None and (report.loser_tokens or report.loser_cost_usd):
            self.loser_tokens += report.loser_tokens
            self.loser_cost_usd += report.loser_cost_usd
            _, _, budget = self.limits.of(self._spec(report.loser_spec))
            budget.debit(report.loser_tokens)
            self._charge(report.loser_spec, report.loser_cost_usd)

    def snapshot(self) -> dict[str, Any]:
        """For ``status()["hedging"]``."""
        dispatched, granted = self._window()
        return {"enabled": self.enabled, "share_cap": self.share, "sent": self.sent,
                "won": self.won, "failed": self.failed, "cancelled": self.cancelled,
                "in_flight": sum(self.holding.values()),
                "window_s": WINDOW_S, "window_requests": int(dispatched),
                "window_hedges": granted,
                "loser_tokens": self.loser_tokens,
                "loser_cost_usd": round(self.loser_cost_usd, 6),
                "refused": dict(self.refused)}

    # -- internals ---------------------------------------------------------------------

    def _refusal(self, spec: str) -> str | None:
        if not self.enabled:
            return "off"
        if self._queued() > 0:
            return "queued"
        if self._clock() < self._throttled.get(spec, 0.0):
            return "rate_limited"
        dispatched, granted = self._window()
        if granted + 1 > self.share * dispatched:
            return "share"
        return None

    def _window(self) -> tuple[float, int]:
        """Requests dispatched and hedges granted within the last :data:`WINDOW_S`."""
        since = self._clock() - WINDOW_S
        while self._dispatched and self._dispatched[0][0] <= since - 1:  # [s, s+1) gone
            self._dispatched_total -= self._dispatched.popleft()[1]
        if not self._dispatched:
            self._dispatched_total = 0.0
        while self._granted and self._granted[0] < since:
            self._granted.popleft()
        return self._dispatched_total, len(self._granted)

    def _spec(self, text: str) -> BackendSpec:
        spec = self._specs.get(text)
        if spec is None:
            spec = self._specs[text] = BackendSpec.parse(text)
        return spec


def _tell(listener: Callable[[Any], None], value: Any) -> None:
    try:
        listener(value)
    except Exception:  # metrics must never cost a worker its hedge decision
        logger.exception("recording a hedge failed")
