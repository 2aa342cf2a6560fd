"""One caller's request as the client's batcher holds it, and a slice of one.

An :class:`Entry` is a single item or a whole ``score_batch`` call with its deadline and
the future its caller waits on; a :class:`Chunk` is the part of an entry that goes into
one ``score_batch`` call to the judge.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..verdict import Status, Verdict

__all__ = ["Chunk", "Entry", "timeout_result"]

_MISSING = object()


class Entry:
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
            self.results[i] = timeout_result(self.items[i], why)
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


def timeout_result(item: Any, why: str) -> Any:
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
class Chunk:
    entry: Entry
    start: int
    stop: int
