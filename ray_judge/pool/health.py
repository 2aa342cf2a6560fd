"""Worker health: which workers were lost and do not answer yet.

A worker that died with a micro-batch (the dispatcher saw
:class:`~ray_judge.pool.dispatch.WorkerLost`) is marked down and pinged, with backoff,
until it answers; until then it gets no micro-batch. A restarting worker fails every
call at once: without this, requeued items would spend their ``max_lost`` on one
restart. Without a ``ping``, a lost worker is sent to again at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["WorkerHealth"]

logger = logging.getLogger(__name__)

#: A lost worker is pinged until it answers: each ping's bound, and the backoff between.
_PING_TIMEOUT_S = 10.0
_PING_BACKOFF_S = (0.1, 2.0)


class WorkerHealth:
    """Lost workers of a pool of ``num_workers``, watched through ``ping``.

    Args:
        num_workers: how many workers there are (indices ``0..n-1``).
        ping: awaits an answer from one worker; None: never hold a lost worker back.
        on_up: called when a lost worker answers again.
    """

    def __init__(self, num_workers: int, ping: Callable[[int], Awaitable[object]] | None,
                 on_up: Callable[[], None]) -> None:
        self.num_workers = num_workers
        self.ping = ping
        self.down: set[int] = set()  # lost workers not yet answering ping
        self._on_up = on_up
        self._watching: set[asyncio.Task[None]] = set()

    @property
    def all_down(self) -> bool:
        return len(self.down) >= self.num_workers

    def usable(self) -> list[int]:
        """The workers to send to; all of them when every one is down (they requeue)."""
        return [w for w in range(self.num_workers) if w not in self.down] or list(
            range(self.num_workers))

    def mark_down(self, worker: int) -> None:
        if self.ping is None or worker in self.down:
            return
        self.down.add(worker)
        task = asyncio.get_running_loop().create_task(self._watch(worker))
        self._watching.add(task)
        task.add_done_callback(self._watching.discard)

    async def _watch(self, worker: int) -> None:
        """Ping a lost worker (with backoff) until it answers, then use it again."""
        assert self.ping is not None
        delay = _PING_BACKOFF_S[0]
        while True:
            try:
                await asyncio.wait_for(self.ping(worker), _PING_TIMEOUT_S)
                break
            except Exception:  # restarting, or the ping timed out: ask again later
                await asyncio.sleep(delay)
                delay = min(2 * delay, _PING_BACKOFF_S[1])
        logger.info("judge worker %d answers again", worker)
        self.down.discard(worker)
        self._on_up()
