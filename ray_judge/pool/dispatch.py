"""The singleton's scheduler: one queue, global limits, micro-batches to workers.

Every request, from ``score`` or ``score_batch``, becomes an item in one FIFO queue. A
single dispatcher task takes as many items as the current backend has free slots (and
rate budget), answers those it can from the verdict cache or by joining an identical
request already in flight, splits the rest into micro-batches over the least busy
workers, and sends one call per micro-batch. So:

* limits are global (held here, not multiplied by the worker count);
* excess requests wait in the queue; none is rejected because the pool is busy;
* the backend is chosen when an item is dispatched, not when it arrived, so after a
  switch every request that has not started goes to the new backend, while those in
  flight finish on the old one;
* a batch of N items costs one call per worker it lands on, and concurrent single
  calls coalesce into micro-batches on the way to the workers;
* a verdict that says "this backend is out" (usage limit, bad credentials) can be
  served again by the next backend instead of reaching the caller;
* background work (re-judging after a switch) goes through :meth:`Dispatcher.send_spare`,
  which only uses capacity no queued request is waiting for.
* a request that names its backend waits in that backend's own lane (:mod:`.lanes`),
  sharing its limits and the cache, never rerouted;
* a :class:`~ray_judge.verdict.GroupRequest` (several responses judged in one call) is
  one item like any other: one slot, one cache entry, and its result is a tuple of
  Verdicts, one per response.

The module knows nothing about Ray: workers are reached through a ``send`` callable,
and a lost worker is reported by raising :class:`WorkerLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from ..spec import BackendSpec
from ..verdict import Status, Verdict
from .cache import Result, VerdictCache, as_cached, members
from .coalescing import Coalescing
from .failure import failure
from .health import WorkerHealth
from .items import Item, Request, Route, Send, WorkerLost, check_shape
from .lanes import Lane, Lanes
from .limits import BackendLimits, Slots

__all__ = ["Dispatcher", "Request", "Slots", "WorkerLost"]

logger = logging.getLogger(__name__)

#: How often a dispatcher waiting for a slot looks again at which backend is current.
_RESOLVE_EVERY_S = 0.5


class Dispatcher:
    """Queue requests and serve them through ``send(worker_index, spec, requests)``.

    The limits of each backend, the health of the workers and the pacing of small
    rounds are collaborators (:class:`~.limits.BackendLimits`,
    :class:`~.health.WorkerHealth`, :class:`~.coalescing.Coalescing`) built from these
    arguments; the dispatcher itself holds the queue and runs the rounds.

    Args:
        num_workers: how many workers ``send`` can reach (indices ``0..n-1``).
        send: one micro-batch to one worker; returns one result per request, in order
            (a Verdict, or for a GroupRequest a tuple of one Verdict per response).
        route: the backend new requests go to now, optionally with a cap on how many
            items this round may take (a half-open circuit's single probe).
        limit_for: the global in-flight limit of a backend.
        rpm_for / tpm_for: requests / tokens per minute of a backend (<= 0: no limit).
        on_verdict: called once per Verdict before its caller sees it (metrics, stats).
        reroute: called with every Verdict a backend returned (so a failover policy can
            learn from successes too); True means serve the request again, on the
            backend ``route`` names next, at most ``max_reroutes`` times per request.
        cache: verdict cache; ``key_for(spec, request)`` makes its keys.
        max_chunk: largest micro-batch. A round's items are split evenly over the
            workers, so a batch costs one call per worker up to this size.
        max_lost: times an item may lose its worker before it fails as ``backend_error``.
        ping: awaits an answer from one worker. With it, a worker that was lost gets no
            micro-batch until it answers again (a restarting worker fails every call at
            once: without this, requeued items would spend their ``max_lost`` on one
            restart); without it, a lost worker is sent to again at once.
        coalesce_s / coalesce_below: a round that would send fewer than
            ``coalesce_below`` items per worker waits until ``coalesce_s`` after the
            previous round, for more to arrive or come free, so that single calls under
            load share worker calls (a lone request after a quiet spell goes at once).
    """

    def __init__(self, num_workers: int, send: Send, route: Route,
                 limit_for: Callable[[BackendSpec], int], *,
                 rpm_for: Callable[[BackendSpec], float] = lambda spec: 0.0,
                 tpm_for: Callable[[BackendSpec], float] = lambda spec: 0.0,
                 on_verdict: Callable[[Verdict], None] = lambda verdict: None,
                 reroute: Callable[[Verdict], bool] = lambda verdict: False,
                 cache: VerdictCache | None = None,
                 key_for: Callable[[BackendSpec, Request], str] | None = None,
                 max_chunk: int = 256, max_lost: int = 3, max_reroutes: int = 3,
                 coalesce_s: float = 0.02, coalesce_below: int = 8,
                 ping: Callable[[int], Awaitable[object]] | None = None) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be an integer >= 1, got {num_workers!r}")
        self.num_workers = num_workers
        self.send = send
        self.route = route
        self.on_verdict = on_verdict
        self.reroute = reroute
        self.cache = cache
        self.key_for = key_for
        self.max_chunk = max_chunk
        self.max_lost = max_lost
        self.max_reroutes = max_reroutes
        self.limits = BackendLimits(limit_for, rpm_for, tpm_for)
        self.health = WorkerHealth(num_workers, ping, on_up=self._wake_up)
        self.lanes = Lanes(route, Coalescing(coalesce_s, coalesce_below * num_workers))
        self._queue = self.lanes.main.queue
        self._in_flight_keys: dict[str, Item] = {}
        self._load = [0] * num_workers
        self._serving: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Dispatcher(num_workers={self.num_workers}, queued={self.queued})"

    # -- callers -----------------------------------------------------------------------

    def submit(self, requests: Sequence[Request], backend: BackendSpec | None = None,
               sample: int = 0) -> list[asyncio.Future[Result]]:
        """Queue ``requests``; each future resolves to its result (never to an exception).

        ``backend`` pins them to that backend (its own lane, no reroute, see
        :mod:`.lanes`); ``sample`` > 0 makes the k-th independent judgement of the same
        request, cached under a key of its own.
        """
        loop = asyncio.get_running_loop()
        lane = self.lanes.of(backend)
        if lane.task is None or lane.task.done():
            lane.wake = asyncio.Event()  # of this loop
            lane.task = loop.create_task(self._run(lane), name="ray_judge-dispatcher")
        futures = []
        for request in requests:
            future: asyncio.Future[Result] = loop.create_future()
            lane.queue.append(Item(request, future, sample=sample, pinned=lane.pinned))
            futures.append(future)
        self._wake_up()
        return futures

    @property
    def queued(self) -> int:
        return self.lanes.queued

    def in_flight(self) -> dict[str, int]:
        return self.limits.in_flight()

    async def send_spare(self, spec: BackendSpec,
                         requests: Sequence[Request]) -> list[Result]:
        """Serve the first k of ``requests`` outside the queue, on spare capacity only.

        k is what ``spec`` can start now without a queued request waiting for it: 0 while
        anything is queued, else bounded by free slots, the rate and the token budget.
        The slots are held while the call runs (so the global limit holds) and given
        back after. Returns k results in order (a group's: a Verdict per response, failed
        ones too); they bypass the cache and ``on_verdict``.
        """
        if self.queued or not requests:
            return []
        slots, rate, budget = self.limits.of(spec)
        if budget.wait_s() > 0:
            return []
        n = slots.try_take(min(len(requests), rate.available()))
        if n == 0:
            return []
        allowed = await rate.take(n, 0)
        slots.give_back(n - allowed)
        n = allowed
        if n == 0:
            return []
        worker = min(range(self.num_workers), key=self._load.__getitem__)
        self._load[worker] += n
        batch = list(requests[:n])
        try:
            results = list(await self.send(worker, str(spec), batch))
            if len(results) != n:
                raise RuntimeError(f"worker {worker} returned {len(results)} verdicts for {n}")
        except Exception as exc:  # WorkerLost too: background work is not re-queued
            results = [failure(r, Status.BACKEND_ERROR, f"background call failed: {exc!r}",
                               backend=str(spec)) for r in batch]
        finally:
            self._load[worker] -= n
            slots.give_back(n)
            self._wake_up()
        for result in results:
            for verdict in members(result):
                budget.debit((verdict.input_tokens or 0) + (verdict.output_tokens or 0))
        return results

    # -- the loop ----------------------------------------------------------------------

    def _wake_up(self) -> None:
        self.lanes.wake_all()

    async def _run(self, lane: Lane) -> None:
        while True:
            if not lane.queue:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            try:
                spec, cap = lane.current()
            except Exception:  # the resolver keeps the last good spec; this is a bug guard
                logger.exception("choosing the backend failed; retrying")
                await asyncio.sleep(_RESOLVE_EVERY_S)
                continue
            await self._round(lane, spec, cap)

    async def _round(self, lane: Lane, spec: BackendSpec, cap: int | None) -> None:
        queue = lane.queue
        if self.health.all_down:  # every worker restarting: wait for one
            lane.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), _RESOLVE_EVERY_S)
            return
        slots, rate, budget = self.limits.of(spec)
        wait = budget.wait_s()
        if wait > 0:  # over the tokens-per-minute budget: let it refill
            await asyncio.sleep(min(wait, _RESOLVE_EVERY_S))
            return
        want = len(queue) if cap is None else min(cap, len(queue))
        n = await slots.take(want, _RESOLVE_EVERY_S)
        if n == 0:
            return
        if cap is None:  # a half-open circuit's probe is not held back
            n = await lane.coalescing.gather(
                n, lambda n: slots.take(max(0, len(queue) - n), 0))
        allowed = await rate.take(n, _RESOLVE_EVERY_S)
        batch = self._pop_misses(queue, spec, allowed)
        slots.give_back(n - len(batch))
        for worker, chunk in self._split(batch):
            task = asyncio.get_running_loop().create_task(
                self._serve(lane, worker, spec, chunk))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    def _pop_misses(self, queue: deque[Item], spec: BackendSpec, n: int) -> list[Item]:
        """Up to ``n`` items that need a backend call; cache hits and duplicates of a
        request already in flight are settled on the way without using a slot."""
        batch: list[Item] = []
        while queue and len(batch) < n:
            item = queue.popleft()
            if item.future.done():  # the caller went away
                continue
            if self.cache is not None and self.cache.enabled and self.key_for is not None:
                item.key = self.key_for(spec, item.request) + (
                    f"#{item.sample}" if item.sample else "")
                hit = self.cache.get(item.key)
                if hit is not None:
                    self._deliver(item, as_cached(hit, item.request))
                    continue
                leader = self._in_flight_keys.get(item.key)
                # Only within a lane: a pinned request never rides on one that may be
                # rerouted, nor a routed one on one that may not.
                if leader is not None and leader.pinned == item.pinned:
                    leader.followers.append(item)
                    self.cache.deduplicated += 1
                    continue
                self._in_flight_keys[item.key] = item
            batch.append(item)
        return batch

    def _split(self, items: list[Item]) -> list[tuple[int, list[Item]]]:
        """Micro-batches of at most ``max_chunk``, each to the least loaded worker."""
        if not items:
            return []
        # All down since the round began (it awaited slots): send anyway, they requeue.
        up = self.health.usable()
        per_worker = math.ceil(len(items) / len(up))
        size = max(1, min(self.max_chunk, per_worker))
        out = []
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            worker = min(up, key=self._load.__getitem__)
            self._load[worker] += len(chunk)
            out.append((worker, chunk))
        return out

    async def _serve(self, lane: Lane, worker: int, spec: BackendSpec,
                     chunk: list[Item]) -> None:
        slots, _, budget = self.limits.of(spec)
        spec_text = str(spec)
        try:
            verdicts = list(await self.send(worker, spec_text, [it.request for it in chunk]))
            if len(verdicts) != len(chunk):
                raise RuntimeError(f"worker {worker} returned {len(verdicts)} verdicts "
                                   f"for {len(chunk)} requests")
            for item, result in zip(chunk, verdicts, strict=True):
                check_shape(item.request, result)
        except WorkerLost as exc:
            logger.warning("judge worker %d lost with %d requests; re-queueing them (%s)",
                           worker, len(chunk), exc)
            self.health.mark_down(worker)
            self._requeue(lane, chunk, spec_text, lost=True)
            return
        except Exception as exc:  # every waiting caller gets a Verdict, never a hang
            logger.exception("micro-batch of %d on worker %d failed", len(chunk), worker)
            verdicts = [failure(it.request, Status.BACKEND_ERROR,
                                f"judge worker {worker} failed: {exc!r}", backend=spec_text)
                        for it in chunk]
        finally:
            self._load[worker] -= len(chunk)
            slots.give_back(len(chunk))
            self._wake_up()
        again = []
        for item, verdict in zip(chunk, verdicts, strict=True):
            budget.debit(sum((v.input_tokens or 0) + (v.output_tokens or 0)
                             for v in members(verdict)))
            if (not lane.pinned and self._reroute(verdict)
                    and item.rerouted < self.max_reroutes):
                item.rerouted += 1
                again.append(item)
            else:
                self._settle(item, verdict)
        if again:
            self._requeue(lane, again, spec_text, lost=False)

    def _reroute(self, result: Result) -> bool:
        # A group's members share one call: its first failure (or its first member,
        # when all are ok) speaks for the call.
        verdicts = members(result)
        verdict = next((v for v in verdicts if not v.ok), verdicts[0])
        try:
            return self.reroute(verdict)
        except Exception:
            logger.exception("deciding on a failover failed; delivering the verdict")
            return False

    def _requeue(self, lane: Lane, chunk: list[Item], spec: str, *, lost: bool) -> None:
        for item in reversed(chunk):
            self._forget(item)
            item.lost += int(lost)
            if item.lost > self.max_lost:
                self._settle(item, failure(
                    item.request, Status.BACKEND_ERROR,
                    f"judge workers died {item.lost} times while serving this request",
                    backend=spec))
                continue
            followers, item.followers = item.followers, []
            for follower in reversed(followers):
                lane.queue.appendleft(follower)
            lane.queue.appendleft(item)
        self._wake_up()

    def _forget(self, item: Item) -> None:
        if item.key is not None and self._in_flight_keys.get(item.key) is item:
            del self._in_flight_keys[item.key]

    def _settle(self, item: Item, verdict: Result) -> None:
        """Deliver a leader's verdict to it and to the identical requests riding along."""
        self._forget(item)
        if self.cache is not None and item.key is not None:
            self.cache.put(item.key, verdict)
        self._deliver(item, verdict)
        for follower in item.followers:
            self._deliver(follower, as_cached(verdict, follower.request))
        item.followers = []

    def _deliver(self, item: Item, verdict: Result) -> None:
        for one in members(verdict):
            try:
                self.on_verdict(one)
            except Exception:  # metrics must never cost a caller its verdict
                logger.exception("recording a verdict failed")
        if not item.future.done():
            item.future.set_result(verdict)

