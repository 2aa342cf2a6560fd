"""How long the fake provider takes per model call: a base latency, a seeded heavy tail,
and chosen requests made slow; and how many calls their client gave up on.

A tail is what real providers have ("usually a second, sometimes thirty"): with
``tail_p``, a call takes ``tail_s`` more, drawn from a seeded generator so a benchmark
run is repeatable. :meth:`Latency.slow` makes the next calls whose body contains a
marker slow, for a test that must know which call is late (a hedge of it, arriving
later, is not slow unless asked for again).
"""

from __future__ import annotations

import json
import random
import threading
from typing import Any

__all__ = ["Latency"]


class Latency:
    """Per-call delays of one fake server (thread-safe: the control API sets them)."""

    def __init__(self, base_s: float = 0.0, *, tail_p: float = 0.0, tail_s: float = 0.0,
                 seed: int = 0) -> None:
        if not 0.0 <= tail_p <= 1.0:
            raise ValueError(f"tail_p must be within [0, 1], got {tail_p!r}")
        if base_s < 0 or tail_s < 0:
            raise ValueError(f"latencies must be >= 0, got base_s={base_s!r}, "
                             f"tail_s={tail_s!r}")
        self.base_s = self._initial_s = base_s
        self.tail_p = tail_p
        self.tail_s = tail_s
        self._rng = random.Random(seed)  # noqa: S311 - a repeatable fake latency, not a secret
        self._lock = threading.Lock()
        self._slow: list[list[Any]] = []  # [marker, delay_s, times left]
        self.tails = 0  # calls that drew the tail
        self.abandoned = 0  # calls whose client closed the connection before the answer

    def __repr__(self) -> str:
        return (f"Latency(base_s={self.base_s}, tail_p={self.tail_p}, tail_s={self.tail_s}, "
                f"abandoned={self.abandoned})")

    def slow(self, marker: str, delay_s: float, times: int = 1) -> None:
        """The next ``times`` calls whose request body contains ``marker`` take
        ``delay_s`` more."""
        if not isinstance(marker, str) or not marker:
            raise ValueError(f"slow() needs a non-empty marker string, got {marker!r}")
        if not (isinstance(delay_s, (int, float)) and delay_s >= 0):
            raise ValueError(f"slow() needs delay_s >= 0, got {delay_s!r}")
        if not (isinstance(times, int) and times >= 1):
            raise ValueError(f"slow() needs times >= 1, got {times!r}")
        with self._lock:
            self._slow.append([marker, float(delay_s), times])

    def of(self, body: dict[str, Any]) -> float:
        """Seconds the call with request ``body`` takes before its answer."""
        with self._lock:
            delay = self.base_s
            if self.tail_p and self._rng.random() < self.tail_p:
                self.tails += 1
                delay += self.tail_s
            if self._slow:
                text = json.dumps(body)
                for entry in self._slow:
                    if entry[0] in text:
                        delay += entry[1]
                        entry[2] -= 1
                        break
                self._slow = [e for e in self._slow if e[2] > 0]
            return delay

    def left(self) -> None:
        """A call's client went away before its answer."""
        with self._lock:
            self.abandoned += 1

    def reset(self) -> None:
        """Back to the latency it was made with; forget the chosen slow requests and the
        counts (the tail stays, and its draws go on)."""
        with self._lock:
            self.base_s = self._initial_s
            self._slow.clear()
            self.tails = 0
            self.abandoned = 0
