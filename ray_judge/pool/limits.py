"""Global limits the singleton holds per backend: in-flight slots, requests and tokens per minute.

All three hand out "up to N" permits to a single taker (the dispatcher), wait when
there are none, and never reject: excess work waits in the judge's queue.
:class:`BackendLimits` keeps the three of each backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..spec import BackendSpec

__all__ = ["BackendLimits", "RateLimiter", "Slots", "TokenBudget"]


class Slots:
    """A counting semaphore that hands out several permits at once, to one taker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        return self.limit - self.in_use

    async def take(self, want: int, timeout: float) -> int:
        """Take between 1 and ``want`` permits; 0 if none came free within ``timeout``."""
        if self.free <= 0:
            self._freed.clear()
            try:
                await asyncio.wait_for(self._freed.wait(), timeout)
            except asyncio.TimeoutError:
                return 0
            if self.free <= 0:
                return 0
        n = min(want, self.free)
        self.in_use += n
        return n

    def try_take(self, want: int) -> int:
        """Take up to ``want`` permits that are free now, without waiting."""
        n = max(0, min(want, self.free))
        self.in_use += n
        return n

    def give_back(self, n: int) -> None:
        self.in_use -= n
        self._freed.set()


class RateLimiter:
    """Requests per minute as a leaky bucket (aiolimiter's model): a burst of up to
    ``per_minute``, then a steady ``per_minute / 60`` per second.

    ``per_minute <= 0`` means no limit.
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._level = 0.0  # permits used within the bucket
        self._last = clock()

    def _leak(self) -> None:
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._last) * self.per_minute / 60.0)
        self._last = now

    def available(self) -> int:
        if self.per_minute <= 0:
            return 1 << 30
        self._leak()
        return int(self.per_minute - self._level)

    async def take(self, want: int, timeout: float) -> int:
        """Take between 1 and ``want`` permits; 0 if none within ``timeout``."""
        if self.per_minute <= 0:
            return want
        free = self.available()
        if free < 1:
            wait = (1 - (self.per_minute - self._level)) * 60.0 / self.per_minute
            if wait > timeout:
                await asyncio.sleep(timeout)
                return 0
            await asyncio.sleep(wait)
            free = self.available()
            if free < 1:
                return 0
        n = min(want, free)
        self._level += n
        return n


class TokenBudget:
    """Tokens per minute, debited after the fact (a backend reports tokens when it answers).

    New work may start while the budget is positive; a large verdict can take it below
    zero, and then dispatch waits until it refills. ``per_minute <= 0``: no limit.
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._tokens = float(per_minute)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.per_minute,
                           self._tokens + (now - self._last) * self.per_minute / 60.0)
        self._last = now

    def debit(self, tokens: int) -> None:
        if self.per_minute > 0 and tokens:
            self._refill()
            self._tokens -= tokens

    def wait_s(self) -> float:
        """Seconds until new work may start (0 when it may start now)."""
        if self.per_minute <= 0:
            return 0.0
        self._refill()
        return 0.0 if self._tokens > 0 else (1 - self._tokens) * 60.0 / self.per_minute


class BackendLimits:
    """The three limits of every backend, made from its settings when first used.

    Args:
        limit_for: the global in-flight limit of a backend.
        rpm_for / tpm_for: requests / tokens per minute of a backend (<= 0: no limit).
    """

    def __init__(self, limit_for: Callable[[BackendSpec], int],
                 rpm_for: Callable[[BackendSpec], float],
                 tpm_for: Callable[[BackendSpec], float]) -> None:
        self.limit_for = limit_for
        self.rpm_for = rpm_for
        self.tpm_for = tpm_for
        self._of: dict[str, tuple[Slots, RateLimiter, TokenBudget]] = {}

    def of(self, spec: BackendSpec) -> tuple[Slots, RateLimiter, TokenBudget]:
        key = str(spec)
        limits = self._of.get(key)
        if limits is None:
            limits = self._of[key] = (Slots(self.limit_for(spec)),
                                      RateLimiter(self.rpm_for(spec)),
                                      TokenBudget(self.tpm_for(spec)))
        return limits

    def in_flight(self) -> dict[str, int]:
        """Slots in use, per backend that has been used."""
        return {spec: slots.in_use for spec, (slots, _, _) in self._of.items()}
