"""A bounded uniform sample of the requests a judge served, with each backend's score.

Algorithm R (Vitter, 1985): the first ``capacity`` requests fill the reservoir; the
n-th after that replaces a random entry with probability ``capacity / n``. So at any
moment the reservoir is a uniform sample of the whole run, whatever its length, and
costs ``capacity`` entries of memory.

An entry keeps the request (without the caller's metadata) and the scores backends gave
it, keyed by backend spec: the backend that served it first, then any backend that
re-judged it after a switch. Pairs of two backends' scores on the same requests are what
the shift statistics and the calibration map are computed from.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..verdict import JudgeRequest

__all__ = ["DEFAULT_CAPACITY", "Reservoir", "Sample"]

DEFAULT_CAPACITY = 300


@dataclass
class Sample:
    """One reservoir entry: a request and ``{backend spec: score in [0, 1]}``."""

    request: JudgeRequest
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for the SQLite cache file)."""
        request = {k: v for k, v in dataclasses.asdict(self.request).items()
                   if k != "metadata" and v is not None}
        return {"request": request, "scores": dict(self.scores)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sample:
        scores = {str(k): float(v) for k, v in dict(data["scores"]).items()}
        return cls(JudgeRequest(**dict(data["request"])), scores)


class Reservoir:
    """A uniform reservoir of at most ``capacity`` :class:`Sample` values.

    Args:
        capacity: entries kept (0: keep nothing).
        rng: where the random choices come from (a seeded ``random.Random`` in tests).
        seen: requests offered so far (when restored from disk).
        samples: entries restored from disk.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, rng: random.Random | None = None,
                 seen: int = 0, samples: Iterable[Sample] = ()) -> None:
        if not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity must be an integer >= 0, got {capacity!r}")
        self.capacity = capacity
        self.samples: list[Sample] = list(samples)[:capacity]
        self.seen = max(seen, len(self.samples))
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not security

    def __len__(self) -> int:
        return len(self.samples)

    def offer(self, request: JudgeRequest, backend: str, score: float) -> int | None:
        """Count one served request; returns the slot it now fills, or None if not kept."""
        self.seen += 1
        if self.capacity == 0:
            return None
        sample = Sample(dataclasses.replace(request, metadata=None), {backend: score})
        if len(self.samples) < self.capacity:
            self.samples.append(sample)
            return len(self.samples) - 1
        slot = self._rng.randrange(self.seen)
        if slot >= self.capacity:
            return None
        self.samples[slot] = sample
        return slot

    def slot_of(self, sample: Sample) -> int | None:
        """Where ``sample`` is now (None once it was replaced)."""
        for i, kept in enumerate(self.samples):
            if kept is sample:
                return i
        return None

    def missing(self, backend: str) -> list[Sample]:
        """Entries ``backend`` has not scored yet but some other backend has."""
        return [s for s in self.samples if backend not in s.scores and s.scores]

    def pairs(self, old: str, new: str) -> list[tuple[float, float]]:
        """``(old score, new score)`` of every entry both backends scored."""
        return [(s.scores[old], s.scores[new]) for s in self.samples
                if old in s.scores and new in s.scores]
