"""The client's queue: one per process, on its own event-loop thread.

Calls from any thread go into an inbox; the loop moves them to the pending queue and
flushes it at most ``linger_s`` after its first item arrived (at once when ``max_batch``
items wait) as ONE ``score_batch`` call to the judge.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from typing import Any

from ray.exceptions import RayActorError

from .cluster import find
from .entry import Chunk, Entry
from .recovery import wait_for_judge
from .refusal import bisect, clean

__all__ = ["Batcher"]

logger = logging.getLogger(__name__)

class Batcher:
    """The queue of one process, on its own event-loop thread."""

    def __init__(self, name: str, namespace: str, *, linger_s: float, max_batch: int,
                 deadline_s: float) -> None:
        self.name, self.namespace = name, namespace
        self.linger_s, self.max_batch = linger_s, max_batch
        self.deadline_s = deadline_s
        self._inbox: deque[Entry] = deque()
        self._wakeup = False
        self._pending: deque[Chunk] = deque()
        self._pending_items = 0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._handle: Any = None
        self._down: str | None = None  # why the judge is unreachable, while it is
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = {"calls": 0, "items": 0, "resubmitted": 0, "timeouts": 0, "splits": 0,
                       "judge_lost": 0}
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True,
                                        name=f"ray_judge-client-{self.name}")
        self._thread.start()
        ready.wait()

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    # -- any thread ----------------------------------------------------------------------

    def add(self, entry: Entry) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("JudgeClient's blocking calls cannot run on its own loop")
        self._inbox.append(entry)
        # One wake-up for everything that arrives before the loop gets to it: a burst of
        # calls costs one cross-thread hop, not one each.
        if not self._wakeup:
            self._wakeup = True
            self.loop.call_soon_threadsafe(self._drain)

    def lookup(self) -> Any:
        return find(self.name, self.namespace)

    def snapshot(self) -> dict[str, Any]:
        return {**self.counts, "queued": self._pending_items + sum(
            len(e.items) for e in list(self._inbox)), "judge_down": self._down}

    def close(self) -> None:
        def stop() -> None:
            self._drain()
            for chunk in self._pending:
                chunk.entry.expire("the JudgeClient was closed")
            self.loop.stop()

        if self.loop.is_running():
            self.loop.call_soon_threadsafe(stop)
            self._thread.join(timeout=5)

    # -- the loop ------------------------------------------------------------------------

    def _drain(self) -> None:
        self._wakeup = False
        while self._inbox:
            entry = self._inbox.popleft()
            if entry.future.cancelled():
                continue
            entry.timer = self.loop.call_at(entry.deadline, self._expire, entry)
            self._pending.append(Chunk(entry, 0, len(entry.items)))
            self._pending_items += len(entry.items)
        if self._down:
            return  # held; _recover flushes once the judge answers
        if self._pending_items >= self.max_batch:
            self._flush()
        elif self._pending and self._flush_timer is None:
            self._flush_timer = self.loop.call_later(self.linger_s, self._flush)

    def _expire(self, entry: Entry) -> None:
        state = (f"the judge has been unreachable ({self._down})" if self._down
                 else "the judge had not answered")
        n = entry.expire(f"no verdict within the client's deadline of {self.deadline_s:g}s: "
                         f"{state}")
        self.counts["timeouts"] += n

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._down:
            return  # held until the judge answers again
        while self._pending:
            chunks = self._take()
            if chunks:
                self._spawn(self._send(chunks))

    def _take(self) -> list[Chunk]:
        room, out = self.max_batch, []
        while self._pending and room:
            chunk = self._pending[0]
            if chunk.entry.done:
                self._pending.popleft()
                self._pending_items -= chunk.stop - chunk.start
                continue
            stop = min(chunk.stop, chunk.start + room)
            out.append(Chunk(chunk.entry, chunk.start, stop))
            if stop == chunk.stop:
                self._pending.popleft()
            else:
                self._pending[0] = Chunk(chunk.entry, stop, chunk.stop)
            self._pending_items -= stop - chunk.start
            room -= stop - chunk.start
        return out

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self) -> Any:
        if self._handle is None:
            self._handle = await asyncio.to_thread(self.lookup)
        return self._handle

    async def _send(self, chunks: list[Chunk]) -> None:
        chunks = [c for c in chunks if not c.entry.done]
        if not chunks:
            return
        items = list(itertools.chain.from_iterable(
            c.entry.items[c.start:c.stop] for c in chunks))
        try:
            handle = await self._judge()
            self.counts["calls"] += 1
            self.counts["items"] += len(items)
            results = await self._result(handle.score_batch.remote(items), chunks)
        except (TypeError, ValueError) as exc:
            self._refused(chunks, clean(exc))
            return
        except RayActorError as exc:  # died, restarting, or unreachable: hold and resend
            self._lost(chunks, exc)
            return
        except Exception as exc:  # a judge that is not running, or a bug: tell the callers
            for chunk in chunks:
                chunk.entry.fail(clean(exc))
            return
        if results is None:  # every caller's deadline passed first
            return
        if len(results) != len(items):
            error = RuntimeError(f"the judge returned {len(results)} results for "
                                 f"{len(items)} items")
            for chunk in chunks:
                chunk.entry.fail(error)
            return
        offset = 0
        for chunk in chunks:
            n = chunk.stop - chunk.start
            chunk.entry.put(chunk.start, results[offset:offset + n])
            offset += n

    async def _result(self, ref: Any, chunks: list[Chunk]) -> list[Any] | None:
        """The call's result, or None once every entry in it has been settled otherwise."""
        future = asyncio.wrap_future(ref.future())
        try:
            while True:
                last = max(c.entry.deadline for c in chunks)
                done, _ = await asyncio.wait({future}, timeout=max(0.0, last - time.monotonic())
                                             + 0.05)
                if done:
                    return future.result()
                if all(c.entry.done for c in chunks):
                    return None
        finally:
            if not future.done():
                future.cancel()

    def _refused(self, chunks: list[Chunk], exc: BaseException) -> None:
        """The judge rejected the input: split the batch until the culprit is alone."""
        halves = bisect(chunks, exc)
        if halves:
            self.counts["splits"] += 1
        for half in halves:
            self._spawn(self._send(half))

    def _lost(self, chunks: list[Chunk], exc: BaseException) -> None:
        live = [c for c in chunks if not c.entry.done]
        self.counts["resubmitted"] += sum(c.stop - c.start for c in live)
        for chunk in reversed(live):  # back to the front, in their order
            self._pending.appendleft(chunk)
            self._pending_items += chunk.stop - chunk.start
        if self._down is None:
            self._down = type(exc).__name__
            self.counts["judge_lost"] += 1
            self._handle = None
            logger.warning("judge %r unreachable (%s); holding %d items until it answers",
                           self.name, self._down, self._pending_items)
            self._spawn(self._recover())

    async def _recover(self) -> None:
        handle = await wait_for_judge(self.lookup, self._holding, self._still_down)
        if handle is None:  # all held expired: none waits
            self._pending.clear()
            self._pending_items = 0
            self._handle, self._down = None, None
            return
        logger.warning("judge %r answers again; resubmitting %d items", self.name,
                       self._pending_items)
        self._handle, self._down = handle, None
        self._flush()

    def _holding(self) -> bool:
        return not all(c.entry.done for c in self._pending)

    def _still_down(self, why: str) -> None:
        self._down = why
