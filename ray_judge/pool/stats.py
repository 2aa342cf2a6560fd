"""Running totals of what the judge served, for ``status`` and ``show``."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from ..verdict import Verdict

__all__ = ["JudgeStats", "percentile"]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by nearest rank, or None when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


class JudgeStats:
    """Counts by backend and status, recent latencies, tokens and cost, and the
    providers' prompt caching per backend (``prompt_cache``: not the verdict cache).

    Latency percentiles are over the last ``window`` verdicts: a multi-day run wants
    "now", not the average since Tuesday.
    """

    def __init__(self, window: int = 10_000) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.latencies: deque[float] = deque(maxlen=window)
        self.cost_usd = 0.0
        self.input_tokens = 0
        self.output_tokens = 0
        self.retries = 0
        self.format_retries = 0
        self.cached = 0
        #: backend -> [input tokens of calls that reported prompt caching, read, written]
        self.prompt_cache: dict[str, list[int]] = {}

    def record(self, verdict: Verdict) -> None:
        self.counts[(verdict.backend or "?", verdict.status.value)] += 1
        if verdict.spent_elsewhere:
            self.cached += verdict.cached
            return
        self.latencies.append(verdict.latency_s)
        if verdict.counts_call:
            self.retries += verdict.transport_retries
            self.format_retries += verdict.format_retries
        self.cost_usd += verdict.cost_usd or 0.0
        self.input_tokens += verdict.input_tokens or 0
        self.output_tokens += verdict.output_tokens or 0
        if verdict.cache_read_tokens is not None and verdict.input_tokens:
            sums = self.prompt_cache.setdefault(verdict.backend or "?", [0, 0, 0])
            sums[0] += verdict.input_tokens
            sums[1] += verdict.cache_read_tokens
            sums[2] += verdict.cache_write_tokens or 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def snapshot(self) -> dict[str, Any]:
        by_backend: dict[str, dict[str, int]] = {}
        for (backend, status), n in sorted(self.counts.items()):
            by_backend.setdefault(backend, {})[status] = n
        latencies = sorted(self.latencies)  # once: percentile() on sorted input is O(n)
        return {
            "total": self.total,
            "counts": by_backend,
            "latency_p50_s": percentile(latencies, 0.50),
            "latency_p95_s": percentile(latencies, 0.95),
            "cost_usd": round(self.cost_usd, 6),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "retries": self.retries,
            "format_retries": self.format_retries,
            "cached": self.cached,
            "prompt_cache": {
                backend: {"input_tokens": n, "read_tokens": read, "write_tokens": written,
                          "hit_ratio": round(read / n, 4) if n else None}
                for backend, (n, read, written) in sorted(self.prompt_cache.items())},
        }
