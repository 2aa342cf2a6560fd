"""Spend budgets: what billed backends cost, and what happens when a limit is reached.

``LLM_JUDGE_BUDGET_USD`` sets a limit for the run and/or per rolling hour.
:class:`Budget` counts the ``cost_usd`` of every verdict a billed backend returns
(LiteLLM but ``hosted_vllm/``; the Claude Code CLI only when it runs on an API key,
``ANTHROPIC_API_KEY``: on a subscription login its cost is notional) and is asked
before every micro-batch goes out (:meth:`Budget.guard` wraps the judge's ``send``). A
limit is reached once spend is at or over it; the calls already in flight then finish
and are counted, so a run overshoots a limit by at most what was in flight when it was
reached.

``LLM_JUDGE_BUDGET_POLICY`` says what a reached limit does to a billed backend:

* ``fallback``: the failover chain passes over it (:meth:`Budget.diverts`) to the next
  backend that is not billed, and returns to it when the hourly window has room again;
  a request already sent to it is served again there. With nothing to fall back to,
  requests fail as with ``fail``.
* ``wait``: a micro-batch waits until the hourly window has room, at most
  ``LLM_JUDGE_DEADLINE`` seconds, then its requests are ``timeout``. A reached run limit
  never refills: those requests fail as with ``fail``.
* ``fail``: ``budget_exhausted`` Verdicts, with ``retry_after`` when the hour will refill.

With a cache file (``LLM_JUDGE_CACHE_PATH``) the spend is kept there, per second, so a
restarted judge remembers it; the run's total is what that file holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from ..config import JudgeConfig
from ..settings import SpendLimits
from ..spec import BackendSpec
from ..verdict import GroupRequest, JudgeRequest, Status
from .cache import Result, members
from .failure import failure

__all__ = ["HOUR_S", "WARN_SHARE", "Budget", "SpendStore", "billed"]

logger = logging.getLogger(__name__)

#: The rolling window of an hourly limit.
HOUR_S = 3600.0
#: Share of a limit whose crossing is logged as a WARNING (once per window).
WARN_SHARE = 0.8
#: Sums of float prices drift: ten calls of 0.01 USD add up to 0.0999...; a limit is
#: reached within this many dollars of it.
_EPSILON = 1e-9

Request = JudgeRequest | GroupRequest
Send = Callable[[int, str, list[Request]], Awaitable[list[Result]]]


#: LiteLLM providers that serve your own model: nothing is billed.
_SELF_HOSTED = ("hosted_vllm/",)


def billed(spec: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``spec``'s reported cost is money: LiteLLM's (but a self-hosted vLLM's),
    the CLI's only on an API key (a subscription login's cost is notional)."""
    parsed = BackendSpec.parse(spec)
    if parsed.kind == "litellm":
        return not parsed.name.startswith(_SELF_HOSTED)
    return bool(environ.get("ANTHROPIC_API_KEY"))


class SpendStore(Protocol):
    """Where spend outlives the judge (:class:`~.cache.VerdictCache` is one)."""

    def add_spend(self, at: float, usd: float) -> None: ...

    def spend(self) -> list[tuple[float, float]]: ...


class Budget:
    """The run's spend against its limits, and the policy's gate in front of ``send``.

    Args:
        limits: the run and hourly limits (either may be None).
        policy: ``fallback``, ``wait`` or ``fail``.
        billed: whether a backend spec's cost counts.
        clock: wall-clock time (the hourly window, ``retry_after``).
        store: keeps the spend across restarts; what it holds is loaded at once.
        deadline_s: the longest a request waits under ``wait``.
        gauge: called with the snapshot whenever the spend changes (metrics).
        poll_s: how often a waiting micro-batch looks at the clock again.
    """

    def __init__(self, limits: SpendLimits, policy: str = "fallback", *,
                 billed: Callable[[str], bool] = billed, clock: Callable[[], float] = time.time,
                 store: SpendStore | None = None, deadline_s: float = 300.0,
                 gauge: Callable[[dict[str, Any]], None] = lambda snapshot: None,
                 poll_s: float = 0.5) -> None:
        self.limits = limits
        self.policy = policy
        self._billed = billed
        self._is_billed: dict[str, bool] = {}
        self._clock = clock
        self._store = store
        self.deadline_s = deadline_s
        self._gauge = gauge
        self.poll_s = poll_s
        self.total = 0.0
        self._hour: deque[list[float]] = deque()  # [second, usd] of the last hour
        self._hour_total = 0.0
        self._warned: set[str] = set()
        self._reached: str | None = None
        self._gauged: tuple[float, float] | None = None
        self.held = 0  # requests waiting now under "wait"
        self.refused = 0  # requests answered budget_exhausted
        for second, usd in store.spend() if store is not None else ():
            self._add(second, usd)
        self._check(self._clock())

    @classmethod
    def of(cls, config: JudgeConfig, **kwargs: Any) -> Budget:
        """The budget ``config`` sets (``LLM_JUDGE_BUDGET_*``, the deadline)."""
        return cls(config.budget_usd, config.budget_policy, deadline_s=config.deadline_s,
                   **kwargs)

    def __repr__(self) -> str:
        return f"Budget({self.limits}, policy={self.policy!r}, spent={self.total:.4f})"

    # -- the gate ----------------------------------------------------------------------

    def is_billed(self, spec: str) -> bool:
        if spec not in self._is_billed:
            self._is_billed[spec] = self._billed(spec)
        return self._is_billed[spec]

    def blocks(self, spec: str) -> bool:
        """Whether a micro-batch for ``spec`` may not go out now."""
        # No limit (the default): nothing to check before each micro-batch.
        if (self.limits.run is None and self.limits.hourly is None) or not self.is_billed(spec):
            return False
        self._check(self._clock())
        return self._reached is not None

    def diverts(self, spec: str) -> bool:
        """Whether the failover chain should pass over ``spec`` (``fallback`` policy)."""
        return self.policy == "fallback" and self.blocks(spec)

    def guard(self, send: Send) -> Send:
        """``send`` with the budget asked before and told after each micro-batch."""
        async def guarded(worker: int, spec: str, requests: list[Request]) -> list[Result]:
            if self.blocks(spec) and self.policy == "wait":
                await self._hold(spec, len(requests))
                if self.blocks(spec) and self.reached() == "hour":  # the deadline came first
                    return [failure(r, Status.TIMEOUT, f"spend budget: waited "
                                    f"{self.deadline_s:g}s for the hourly limit "
                                    f"({self.limits.hourly:g} USD) to refill",
                                    backend=spec) for r in requests]
            if self.blocks(spec):
                self.refused += len(requests)
                after = self.retry_after()
                return [failure(r, Status.BUDGET_EXHAUSTED, self._why(), backend=spec,
                                retry_after=after) for r in requests]
            results = await send(worker, spec, requests)
            self.charge(spec, results)
            return results
        return guarded

    async def _hold(self, spec: str, n: int) -> None:
        """Wait until ``spec`` may go out, its deadline comes, or only the run's limit
        (which never refills) holds it back."""
        give_up = self._clock() + self.deadline_s
        self.held += n
        try:
            while (self.blocks(spec) and self.reached() == "hour"
                   and self._clock() < give_up):
                await asyncio.sleep(self.poll_s)
        finally:
            self.held -= n

    # -- the spend ---------------------------------------------------------------------

    def charge(self, spec: str, results: Sequence[Result]) -> None:
        """Count what ``spec``'s calls cost (nothing unless it is billed)."""
        if not self.is_billed(spec):
            return
        self.charge_usd(spec, sum(v.cost_usd or 0.0 for r in results for v in members(r)
                                  if not v.spent_elsewhere))

    def charge_usd(self, spec: str, usd: float) -> None:
        """Count ``usd`` spent on ``spec`` outside a Verdict (a hedge's losing call)."""
        if usd <= 0 or not self.is_billed(spec):
            return
        now = self._clock()
        self._add(now, usd)
        if self._store is not None:
            self._store.add_spend(now, usd)
        self._check(now)

    def _add(self, at: float, usd: float) -> None:
        self.total += usd
        second = float(int(at))
        if self._hour and self._hour[-1][0] == second:
            self._hour[-1][1] += usd
        else:
            self._hour.append([second, usd])
        self._hour_total += usd

    def _expire(self, now: float) -> None:
        while self._hour and self._hour[0][0] <= now - HOUR_S:
            self._hour_total -= self._hour.popleft()[1]
        if not self._hour:
            self._hour_total = 0.0  # no float drift once the window is empty

    def hour_spent(self) -> float:
        self._expire(self._clock())
        return self._hour_total

    def reached(self) -> str | None:
        """``"run"`` or ``"hour"``: the limit that is reached now (the run's first)."""
        if self.limits.run is not None and self.total >= self.limits.run - _EPSILON:
            return "run"
        if (self.limits.hourly is not None
                and self.hour_spent() >= self.limits.hourly - _EPSILON):
            return "hour"
        return None

    def refill_at(self) -> float | None:
        """When the hourly window will be under its limit again, if it is the one reached."""
        if self.reached() != "hour":
            return None
        assert self.limits.hourly is not None
        left = self._hour_total
        for second, usd in self._hour:
            left -= usd
            if left < self.limits.hourly - _EPSILON:
                return second + HOUR_S
        return None  # not reached: the loop always ends inside

    def retry_after(self) -> float | None:
        at = self.refill_at()
        return None if at is None else max(0.0, round(at - self._clock(), 1))

    def _why(self) -> str:
        if self.reached() == "run":
            return (f"spend budget: the run's limit of {self.limits.run:g} USD is spent "
                    f"({self.total:.2f} USD)")
        return (f"spend budget: the hourly limit of {self.limits.hourly:g} USD is spent "
                f"({self._hour_total:.2f} USD in the last hour)")

    def _check(self, now: float) -> None:
        """Log the 80% warnings (once per window) and a reached limit (once per time)."""
        self._expire(now)
        for window, spent, limit in (("run", self.total, self.limits.run),
                                     ("hour", self._hour_total, self.limits.hourly)):
            if limit is None:
                continue
            if spent < WARN_SHARE * limit:
                self._warned.discard(window)  # the hour has room again: warn next time
            elif window not in self._warned:
                self._warned.add(window)
                logger.warning("spend budget: %.2f USD of the %s limit of %g USD spent (%.0f%%)",
                               spent, "run's" if window == "run" else "hourly", limit,
                               100 * spent / limit)
        reached = self.reached()
        if reached is not None and reached != self._reached:
            logger.warning("%s; policy %s", self._why(), self.policy)
        self._reached = reached
        if (self.total, self._hour_total) != self._gauged:  # the metric follows the spend
            self._gauged = (self.total, self._hour_total)
            try:
                self._gauge(self.snapshot())
            except Exception:  # metrics must never cost a caller its verdict
                logger.exception("recording the spend budget's metric failed")

    def snapshot(self) -> dict[str, Any]:
        """``status()["budget"]``."""
        refill = self.refill_at()
        return {
            "policy": self.policy,
            "spent_usd": round(self.total, 6),
            "limit_usd": self.limits.run,
            "hour_spent_usd": round(self.hour_spent(), 6),
            "hour_limit_usd": self.limits.hourly,
            "reached": self.reached(),
            "refill_at": refill,
            "refill_in_s": None if refill is None else round(refill - self._clock(), 1),
            "held": self.held,
            "refused": self.refused,
            "persistent": self._store is not None and bool(
                getattr(self._store, "persistent", True)),
        }
