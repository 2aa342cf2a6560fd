"""The client rollout workers use: coalesces single calls, survives judge restarts.

A rollout worker that scores one completion at a time through the raw handle costs the
judge one Ray call per completion, and sees ``ActorDiedError`` /
``ActorUnavailableError`` for every call in flight when the judge actor restarts.
:class:`JudgeClient` sits in the caller's process instead:

* concurrent ``score``/``score_async``/``score_batch`` calls from any thread or event
  loop go into one queue, which is flushed at most ``linger_s`` after its first item
  arrived (at once when ``max_batch`` items wait) as ONE ``score_batch`` call;
* items are forwarded exactly as given (keys it does not know included) and each caller
  gets the judge's results for its own items, in order;
* what was in flight when the judge died is held and sent again once the judge (or a
  new actor under the same name) answers ``ping``; every request still gets exactly
  one result, and one whose deadline passes first gets a ``timeout`` Verdict;
* bad input raises the judge's ``TypeError``/``ValueError`` to its own caller only:
  items with only the known fields are checked here with :class:`JudgeRequest` (the
  judge's own check, so the message is the judge's), and when the judge still rejects
  a coalesced batch (keys only the judge knows) the batch is split in halves and sent
  again until the culprit's call is alone.

The queue runs on an asyncio loop in one daemon thread per process, started on first
use; the client itself holds only its settings, so it pickles into Ray tasks and actors
and starts afresh there (and after a fork).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from ..config import JudgeConfig
from ..verdict import JudgeRequest, Status, Verdict
from .cluster import connect, find

__all__ = ["JudgeClient"]

logger = logging.getLogger(__name__)

#: The fields JudgeRequest knows: items with only these are validated before sending.
_KNOWN = frozenset(("prompt", "response", "reference", "rubric", "metadata"))
#: How long a ping may take while the judge comes back, and the backoff between pings.
_PING_TIMEOUT_S = 5.0
_BACKOFF_S = (0.05, 1.0)
_MISSING = object()


def _number(name: str, value: object, *, low: float, integer: bool = False) -> None:
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < low:  # type: ignore[arg-type]
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} >= {low:g}, got {value!r}")


def _restore(name: str | None, namespace: str | None, linger_s: float, max_batch: int,
             deadline_s: float | None) -> JudgeClient:
    return JudgeClient(name, namespace, linger_s=linger_s, max_batch=max_batch,
                       deadline_s=deadline_s)


class JudgeClient:
    """Score through the running judge, batching concurrent calls of this process.

    Example:
        >>> client = ray_judge.JudgeClient()
        >>> client.score("What is 2+2?", "4", reference="4").score
        1.0

    Args:
        name: the judge actor's name (default ``LLM_JUDGE_ACTOR_NAME``: ``judge``).
        namespace: its Ray namespace (default ``LLM_JUDGE_NAMESPACE``: ``ray_judge``).
        linger_s: how long the first request of a flush waits for others to join it.
        max_batch: most items per ``score_batch`` call.
        deadline_s: each request's time budget from submission, through queueing and
            judge restarts; when it passes the request gets a ``timeout`` Verdict.
            Default: ``LLM_JUDGE_DEADLINE`` (300 s). Raise it when one call queues more
            than the pool serves in that time.
    """

    def __init__(self, name: str | None = None, namespace: str | None = None, *,
                 linger_s: float = 0.002, max_batch: int = 1024,
                 deadline_s: float | None = None) -> None:
        _number("linger_s", linger_s, low=0.0)
        _number("max_batch", max_batch, low=1, integer=True)
        if deadline_s is not None:
            _number("deadline_s", deadline_s, low=0.001)
        config = JudgeConfig.from_env()
        self._args = (name, namespace, linger_s, max_batch, deadline_s)
        self.name = name or config.actor_name
        self.namespace = namespace or config.namespace
        self.linger_s = float(linger_s)
        self.max_batch = max_batch
        self.deadline_s = float(deadline_s if deadline_s is not None else config.deadline_s)
        self._lock = threading.Lock()
        self._batcher: _Batcher | None = None
        self._pid = os.getpid()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, self._args)

    def __repr__(self) -> str:
        return (f"JudgeClient(name={self.name!r}, namespace={self.namespace!r}, "
                f"linger_s={self.linger_s:g}, max_batch={self.max_batch}, "
                f"deadline_s={self.deadline_s:g})")

    # -- scoring -------------------------------------------------------------------------

    def score(self, prompt: str, response: str, reference: str | None = None, *,
              rubric: str | None = None, metadata: Any = None, **extra: Any) -> Any:
        """Grade one response (blocks); returns the judge's Verdict.

        Raises the judge's ``TypeError``/``ValueError`` for malformed arguments.
        """
        return self._submit(*self._single(
            prompt, response, reference, rubric=rubric, metadata=metadata, extra=extra)).result()

    async def score_async(self, prompt: str, response: str, reference: str | None = None,
                          *, rubric: str | None = None, metadata: Any = None,
                          **extra: Any) -> Any:
        """:meth:`score` for async code, on any event loop."""
        return await asyncio.wrap_future(
            self._submit(*self._single(prompt, response, reference, rubric=rubric,
                                       metadata=metadata, extra=extra)))

    def score_batch(self, items: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Grade many items (blocks); the judge's results in the order of ``items``."""
        checked = self._batch(items)
        return self._submit(checked, False).result() if checked else []

    async def score_batch_async(self, items: Sequence[Mapping[str, Any]]) -> list[Any]:
        """:meth:`score_batch` for async code, on any event loop."""
        checked = self._batch(items)
        return await asyncio.wrap_future(self._submit(checked, False)) if checked else []

    def status(self) -> dict[str, Any]:
        """The judge's ``status()`` plus this client's counters under ``"client"``."""
        batcher = self._started()
        handle = batcher.lookup()
        judge = ray.get(handle.status.remote(), timeout=60)
        return {**judge, "client": batcher.snapshot()}

    def close(self) -> None:
        """Stop this process's queue thread; pending requests get a ``timeout`` Verdict."""
        with self._lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _single(prompt: Any, response: Any, reference: Any, *, rubric: Any, metadata: Any,
                extra: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        item: dict[str, Any] = {"prompt": prompt, "response": response}
        for key, value in (("reference", reference), ("rubric", rubric),
                           ("metadata", metadata)):
            if value is not None:
                item[key] = value
        if not extra:
            JudgeRequest(prompt, response, reference, rubric, metadata)  # the judge's check
        item.update(extra)
        return [item], True

    @staticmethod
    def _batch(items: object) -> list[Any]:
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, (list, tuple)):
            raise TypeError(f"score_batch expects a list of dicts, got {type(items).__name__}")
        for i, item in enumerate(items):
            if isinstance(item, JudgeRequest) or not isinstance(item, Mapping):
                JudgeRequest.from_mapping(item, index=i)  # raises for a non-dict
            elif _KNOWN.issuperset(item):
                JudgeRequest.from_mapping(item, index=i)
        return list(items)

    def _started(self) -> _Batcher:
        with self._lock:
            if self._batcher is None or self._pid != os.getpid():
                # Join the cluster the training job runs on (RAY_ADDRESS, or the one
                # `ray start`/launch.sh left on this machine); never start one.
                connect("auto")
                self._pid = os.getpid()
                self._batcher = _Batcher(self.name, self.namespace, linger_s=self.linger_s,
                                         max_batch=self.max_batch,
                                         deadline_s=self.deadline_s)
            return self._batcher

    def _submit(self, items: list[Any], single: bool) -> concurrent.futures.Future[Any]:
        batcher = self._started()
        entry = _Entry(items, single, time.monotonic() + self.deadline_s)
        batcher.add(entry)
        return entry.future


# ---------------------------------------------------------------------------------------


class _Entry:
    """One caller's request: a single item or a whole batch, and where its answer goes."""

    __slots__ = ("deadline", "filled", "future", "items", "results", "single", "timer")

    def __init__(self, items: list[Any], single: bool, deadline: float) -> None:
        self.items = items
        self.single = single
        self.deadline = deadline
        self.results: list[Any] = [_MISSING] * len(items)
        self.filled = 0
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.timer: asyncio.TimerHandle | None = None

    @property
    def done(self) -> bool:
        return self.future.done()

    def put(self, start: int, values: Sequence[Any]) -> None:
        for i, value in enumerate(values, start):
            if self.results[i] is _MISSING:
                self.results[i] = value
                self.filled += 1
        if self.filled == len(self.results):
            self._finish()

    def expire(self, why: str) -> int:
        """Fill every missing result with a timeout Verdict; returns how many."""
        if self.done:
            return 0
        missing = [i for i, r in enumerate(self.results) if r is _MISSING]
        for i in missing:
            self.results[i] = _timeout_result(self.items[i], why)
        self.filled = len(self.results)
        self._finish()
        return len(missing)

    def fail(self, exc: BaseException) -> None:
        if self.timer is not None:
            self.timer.cancel()
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # caller cancelled
            self.future.set_exception(exc)

    def _finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # caller cancelled
            self.future.set_result(self.results[0] if self.single else self.results)


def _timeout_result(item: Any, why: str) -> Any:
    metadata = item.get("metadata") if isinstance(item, Mapping) else getattr(
        item, "metadata", None)
    verdict = Verdict.failure(Status.TIMEOUT, why, metadata=metadata)
    # A group item (a list of responses) gets one Verdict per response, as the judge
    # would answer it.
    responses = item.get("responses") if isinstance(item, Mapping) else None
    if isinstance(responses, (list, tuple)):
        return [verdict] * len(responses)
    return verdict


@dataclass(frozen=True)
class _Chunk:
    entry: _Entry
    start: int
    stop: int


def _clean(exc: BaseException) -> BaseException:
    """The judge's own exception, without Ray's wrapper and traceback text."""
    cause = getattr(exc, "cause", None) if isinstance(exc, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else exc


def _renumber(exc: BaseException, chunk: _Chunk) -> BaseException:
    """Item indices in the judge's message as the caller numbered them."""
    if chunk.entry.single:
        text = re.sub(r"request\[0\]", "request", str(exc))
    elif chunk.start:
        text = re.sub(r"request\[(\d+)\]",
                      lambda m: f"request[{int(m.group(1)) + chunk.start}]", str(exc))
    else:
        return exc
    try:
        return type(exc)(text)
    except Exception:
        return exc


class _Batcher:
    """The queue of one process, on its own event-loop thread."""

    def __init__(self, name: str, namespace: str, *, linger_s: float, max_batch: int,
                 deadline_s: float) -> None:
        self.name, self.namespace = name, namespace
        self.linger_s, self.max_batch = linger_s, max_batch
        self.deadline_s = deadline_s
        self._inbox: deque[_Entry] = deque()
        self._wakeup = False
        self._pending: deque[_Chunk] = deque()
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

    def add(self, entry: _Entry) -> None:
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
            self._pending.append(_Chunk(entry, 0, len(entry.items)))
            self._pending_items += len(entry.items)
        if self._down:
            return  # held; _recover flushes once the judge answers
        if self._pending_items >= self.max_batch:
            self._flush()
        elif self._pending and self._flush_timer is None:
            self._flush_timer = self.loop.call_later(self.linger_s, self._flush)

    def _expire(self, entry: _Entry) -> None:
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

    def _take(self) -> list[_Chunk]:
        room, out = self.max_batch, []
        while self._pending and room:
            chunk = self._pending[0]
            if chunk.entry.done:
                self._pending.popleft()
                self._pending_items -= chunk.stop - chunk.start
                continue
            stop = min(chunk.stop, chunk.start + room)
            out.append(_Chunk(chunk.entry, chunk.start, stop))
            if stop == chunk.stop:
                self._pending.popleft()
            else:
                self._pending[0] = _Chunk(chunk.entry, stop, chunk.stop)
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

    async def _send(self, chunks: list[_Chunk]) -> None:
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
            self._refused(chunks, _clean(exc))
            return
        except RayActorError as exc:  # died, restarting, or unreachable: hold and resend
            self._lost(chunks, exc)
            return
        except Exception as exc:  # a judge that is not running, or a bug: tell the callers
            for chunk in chunks:
                chunk.entry.fail(_clean(exc))
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

    async def _result(self, ref: Any, chunks: list[_Chunk]) -> list[Any] | None:
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

    def _refused(self, chunks: list[_Chunk], exc: BaseException) -> None:
        """The judge rejected the input: split the batch until the culprit is alone.

        A chunk is one caller's single item or (part of) one caller's batch, whose items
        the judge checks together, so an error for a lone chunk is its caller's.
        """
        if len(chunks) == 1:
            chunks[0].entry.fail(_renumber(exc, chunks[0]))
            return
        self.counts["splits"] += 1
        half = len(chunks) // 2
        self._spawn(self._send(chunks[:half]))
        self._spawn(self._send(chunks[half:]))

    def _lost(self, chunks: list[_Chunk], exc: BaseException) -> None:
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
        delay = _BACKOFF_S[0]
        while True:
            if all(c.entry.done for c in self._pending):  # all held expired: none waits
                self._pending.clear()
                self._pending_items = 0
                self._handle, self._down = None, None
                return
            try:
                handle = await asyncio.to_thread(self.lookup)
                pong = await asyncio.wait_for(
                    asyncio.wrap_future(handle.ping.remote().future()), _PING_TIMEOUT_S)
                if pong == "pong":
                    break
            except Exception as exc:  # still restarting, or not there at all yet
                self._down = type(exc).__name__
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_S[1])
        logger.warning("judge %r answers again; resubmitting %d items", self.name,
                       self._pending_items)
        self._handle, self._down = handle, None
        self._flush()
