"""The singleton's scheduler: one queue, global in-flight limits, micro-batches to workers.

Every request, from ``score`` or ``score_batch``, becomes an item in one FIFO queue. A
single dispatcher task takes as many items as the current backend has free slots,
splits them into micro-batches over the least busy workers, and sends one call per
micro-batch. So:

* the in-flight limit is global (held here, not multiplied by the worker count);
* excess requests wait in the queue; none is rejected because the pool is busy;
* the backend is chosen when an item is dispatched, not when it arrived, so after a
  switch every request that has not started goes to the new backend, while those in
  flight finish on the old one;
* a batch of N items costs one call per worker it lands on, and concurrent single
  calls coalesce into micro-batches on the way to the workers.

The module knows nothing about Ray: workers are reached through a ``send`` callable,
and a lost worker is reported by raising :class:`WorkerLost`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .spec import BackendSpec
from .verdict import JudgeRequest, Status, Verdict

__all__ = ["Dispatcher", "Slots", "WorkerLost"]

logger = logging.getLogger(__name__)

#: How often a dispatcher waiting for a slot looks again at which backend is current.
_RESOLVE_EVERY_S = 0.5


class WorkerLost(Exception):
    """The worker died with the micro-batch; its items go back to the queue."""


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

    def give_back(self, n: int) -> None:
        self.in_use -= n
        self._freed.set()


@dataclass
class _Item:
    request: JudgeRequest
    future: asyncio.Future[Verdict]
    lost: int = 0  # times a worker died while holding it


Send = Callable[[int, str, list[JudgeRequest]], Awaitable[Sequence[Verdict]]]


@dataclass
class Dispatcher:
    """Queue requests and serve them through ``send(worker_index, spec, requests)``.

    Args:
        num_workers: how many workers ``send`` can reach (indices ``0..n-1``).
        send: one micro-batch to one worker; returns one Verdict per request, in order.
        resolve: the backend new requests go to now (cheap; called per dispatch round).
        limit_for: the global in-flight limit of a backend.
        on_verdict: called once per Verdict before its caller sees it (metrics, stats).
        max_chunk: largest micro-batch. A round's items are split evenly over the
            workers, so a batch costs one call per worker up to this size.
        max_lost: times an item may lose its worker before it fails as ``backend_error``.
    """

    num_workers: int
    send: Send
    resolve: Callable[[], BackendSpec]
    limit_for: Callable[[BackendSpec], int]
    on_verdict: Callable[[Verdict], None] = lambda v: None
    max_chunk: int = 256
    max_lost: int = 3
    _queue: deque[_Item] = field(default_factory=deque)
    _slots: dict[str, Slots] = field(default_factory=dict)
    _load: list[int] = field(default_factory=list)
    _wake: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    _serving: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be an integer >= 1, got {self.num_workers!r}")
        self._load = [0] * self.num_workers

    # -- callers -----------------------------------------------------------------------

    def submit(self, requests: Sequence[JudgeRequest]) -> list[asyncio.Future[Verdict]]:
        """Queue ``requests``; each future resolves to its Verdict (never to an exception)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="ray_judge-dispatcher")
        futures = []
        for request in requests:
            future: asyncio.Future[Verdict] = loop.create_future()
            self._queue.append(_Item(request, future))
            futures.append(future)
        self._wake_up()
        return futures

    @property
    def queued(self) -> int:
        return len(self._queue)

    def in_flight(self) -> dict[str, int]:
        return {spec: s.in_use for spec, s in self._slots.items()}

    # -- the loop ----------------------------------------------------------------------

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _slots_for(self, spec: BackendSpec) -> Slots:
        key = str(spec)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = Slots(self.limit_for(spec))
        return slots

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                spec = self.resolve()
            except Exception:  # the resolver keeps the last good spec; this is a bug guard
                logger.exception("resolving the backend failed; retrying")
                await asyncio.sleep(_RESOLVE_EVERY_S)
                continue
            slots = self._slots_for(spec)
            n = await slots.take(len(self._queue), _RESOLVE_EVERY_S)
            if n == 0:
                continue
            items = [self._queue.popleft() for _ in range(n)]
            live = [it for it in items if not it.future.done()]
            if len(live) < n:
                slots.give_back(n - len(live))
            for worker, chunk in self._split(live):
                task = asyncio.get_running_loop().create_task(
                    self._serve(worker, spec, chunk, slots))
                self._serving.add(task)
                task.add_done_callback(self._serving.discard)

    def _split(self, items: list[_Item]) -> list[tuple[int, list[_Item]]]:
        """Micro-batches of at most ``max_chunk``, each to the least loaded worker."""
        if not items:
            return []
        per_worker = math.ceil(len(items) / self.num_workers)
        size = max(1, min(self.max_chunk, per_worker))
        out = []
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            worker = min(range(self.num_workers), key=self._load.__getitem__)
            self._load[worker] += len(chunk)
            out.append((worker, chunk))
        return out

    async def _serve(self, worker: int, spec: BackendSpec, chunk: list[_Item],
                     slots: Slots) -> None:
        spec_text = str(spec)
        try:
            verdicts = list(await self.send(worker, spec_text, [it.request for it in chunk]))
            if len(verdicts) != len(chunk):
                raise RuntimeError(f"worker {worker} returned {len(verdicts)} verdicts "
                                   f"for {len(chunk)} requests")
        except WorkerLost as exc:
            self._requeue(worker, spec_text, chunk, exc)
            return
        except Exception as exc:  # every waiting caller gets a Verdict, never a hang
            logger.exception("micro-batch of %d on worker %d failed", len(chunk), worker)
            verdicts = [Verdict.failure(Status.BACKEND_ERROR,
                                        f"judge worker {worker} failed: {exc!r}",
                                        backend=spec_text, metadata=it.request.metadata)
                        for it in chunk]
        finally:
            self._load[worker] -= len(chunk)
            slots.give_back(len(chunk))
            self._wake_up()
        for item, verdict in zip(chunk, verdicts, strict=True):
            self._deliver(item, verdict)

    def _requeue(self, worker: int, spec: str, chunk: list[_Item], exc: Exception) -> None:
        logger.warning("judge worker %d lost with %d requests; re-queueing them (%s)",
                       worker, len(chunk), exc)
        for item in reversed(chunk):
            item.lost += 1
            if item.lost > self.max_lost:
                self._deliver(item, Verdict.failure(
                    Status.BACKEND_ERROR,
                    f"judge workers died {item.lost} times while serving this request",
                    backend=spec, metadata=item.request.metadata))
            else:
                self._queue.appendleft(item)

    def _deliver(self, item: _Item, verdict: Verdict) -> None:
        try:
            self.on_verdict(verdict)
        except Exception:  # metrics must never cost a caller its verdict
            logger.exception("recording a verdict failed")
        if not item.future.done():
            item.future.set_result(verdict)
