"""The dispatcher's queues: one for the serving backend, one per backend a request names.

Requests without ``backend=`` wait in the main lane, whose rounds go to the backend the
resolver and the failover chain choose (:meth:`~.core.JudgeCore.route`). A request that
names its backend (``backend="litellm:openai/gpt-4o-mini"``: an eval, an A/B check)
waits in that backend's own lane, served by a round loop of its own, so it neither
waits behind the main queue nor holds it up. Both share the backend's global limits
(:class:`~.limits.BackendLimits` keys them by spec), the workers and the cache.

A pinned lane never reroutes: a named backend that is out of quota or failing answers
with its own failure, because an eval must measure the backend it named. Nor do its
verdicts feed the failover chain, whose decisions are about the serving route: a
broken backend under test must not move training traffic.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..spec import BackendSpec
from .coalescing import Coalescing
from .items import Item, Route

__all__ = ["Lane", "Lanes"]


class Lane:
    """One FIFO queue, its round loop's task, and the backend its rounds go to.

    Args:
        route: the backend (and optional cap) of the next round.
        pinned: a named backend's lane: its verdicts are never rerouted.
        coalescing: Nagle's rule for its rounds (each lane keeps its own pace).
    """

    def __init__(self, route: Route, *, pinned: bool, coalescing: Coalescing) -> None:
        self.route = route
        self.pinned = pinned
        self.coalescing = coalescing
        self.queue: deque[Item] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Lane(pinned={self.pinned}, queued={len(self.queue)})"

    def current(self) -> tuple[BackendSpec, int | None]:
        routed = self.route()
        return routed if isinstance(routed, tuple) else (routed, None)


class Lanes:
    """The main lane and the pinned ones, created the first time a backend is named."""

    def __init__(self, route: Route, coalescing: Coalescing) -> None:
        self._coalescing = coalescing
        self.main = Lane(route, pinned=False, coalescing=coalescing)
        self.pinned: dict[BackendSpec, Lane] = {}

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield self.main
        yield from list(self.pinned.values())

    def of(self, backend: BackendSpec | None) -> Lane:
        """The lane of requests that name ``backend`` (None: the main lane)."""
        if backend is None:
            return self.main
        lane = self.pinned.get(backend)
        if lane is None:
            lane = self.pinned[backend] = Lane(
                lambda: (backend, None), pinned=True,
                coalescing=Coalescing(self._coalescing.window_s, self._coalescing.below))
        return lane

    @property
    def queued(self) -> int:
        return sum(len(lane.queue) for lane in self)

    def wake_all(self) -> None:
        for lane in self:
            lane.wake.set()
