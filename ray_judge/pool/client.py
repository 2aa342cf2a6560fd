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
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from ..config import JudgeConfig
from ..verdict import JudgeRequest
from .batcher import Batcher
from .cluster import connect
from .entry import Entry
from .pinning import OPTIONS, split_options

__all__ = ["JudgeClient"]

#: The fields JudgeRequest knows: items with only these are validated before sending.
_KNOWN = frozenset(("prompt", "response", "reference", "rubric", "metadata", *OPTIONS))


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
        self._batcher: Batcher | None = None
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

        ``backend="litellm:..."`` judges it with that backend, whatever the override file
        says (an eval, an A/B check; see :mod:`ray_judge.pool.pinning`). Raises the
        judge's ``TypeError``/``ValueError`` for malformed arguments.
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
        item.update(extra)
        if _KNOWN.issuperset(item):  # the judge's checks
            rest, _ = split_options(item, None)
            JudgeRequest(**rest)  # type: ignore[arg-type]
        return [item], True

    @staticmethod
    def _batch(items: object) -> list[Any]:
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, (list, tuple)):
            raise TypeError(f"score_batch expects a list of dicts, got {type(items).__name__}")
        for i, item in enumerate(items):
            if isinstance(item, JudgeRequest) or not isinstance(item, Mapping):
                JudgeRequest.from_mapping(item, index=i)  # raises for a non-dict
            elif _KNOWN.issuperset(item):
                JudgeRequest.from_mapping(split_options(item, i)[0], index=i)
        return list(items)

    def _started(self) -> Batcher:
        with self._lock:
            if self._batcher is None or self._pid != os.getpid():
                # Join the cluster the training job runs on (RAY_ADDRESS, or the one
                # `ray start`/launch.sh left on this machine); never start one.
                connect("auto")
                self._pid = os.getpid()
                self._batcher = Batcher(self.name, self.namespace, linger_s=self.linger_s,
                                        max_batch=self.max_batch,
                                        deadline_s=self.deadline_s)
            return self._batcher

    def _submit(self, items: list[Any], single: bool) -> concurrent.futures.Future[Any]:
        batcher = self._started()
        entry = Entry(items, single, time.monotonic() + self.deadline_s)
        batcher.add(entry)
        return entry.future
