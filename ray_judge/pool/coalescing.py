"""Coalescing: a small dispatch round waits a moment so that single calls share worker calls.

Under load, score calls arrive one at a time and completions free one slot at a time:
sent as they come, each item would cost a worker call of its own (~0.5 ms of CPU in
the judge plus ~0.6 ms in a worker, measured), and the pool would stay at micro-batches
of one. So a round of fewer than ``below`` items waits until ``window_s`` after the
previous round (Nagle's rule): a lone request after a quiet spell goes at once, a
stream of them goes in micro-batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["Coalescing"]


class Coalescing:
    """Nagle's rule for dispatch rounds; ``window_s`` 0 turns it off."""

    def __init__(self, window_s: float, below: int) -> None:
        self.window_s = window_s
        self.below = below
        self._last_round = float("-inf")

    async def gather(self, n: int, more: Callable[[int], Awaitable[int]]) -> int:
        """The size of a round that has ``n`` items: a small one waits out the window,
        then takes ``more(n)`` items that arrived or came free meanwhile."""
        if n >= self.below or not self.window_s:
            return n
        loop = asyncio.get_running_loop()
        wait = self._last_round + self.window_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
            n += await more(n)
        self._last_round = loop.time()
        return n
