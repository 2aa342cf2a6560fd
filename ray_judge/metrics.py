"""Prometheus metrics of the judge, through ``ray.util.metrics``.

They are exported by every node's metrics agent with the ``ray_`` prefix (for example
``ray_judge_requests_total``) and so appear in the Ray dashboard's metrics view.
Only the singleton records them, once per verdict, so totals are exact.
"""

from __future__ import annotations

from .verdict import Verdict

__all__ = ["JudgeMetrics"]

_LATENCY_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300]


class JudgeMetrics:
    """The judge's metrics; constructing it needs a connected Ray worker (an actor)."""

    def __init__(self) -> None:
        from ray.util import metrics

        self.requests = metrics.Counter(
            "judge_requests_total", "Verdicts served, by backend and status.",
            tag_keys=("backend", "status"))
        self.latency = metrics.Histogram(
            "judge_latency_seconds", "Seconds from dispatch to verdict (retries included).",
            boundaries=_LATENCY_BOUNDARIES, tag_keys=("backend",))
        self.in_flight = metrics.Gauge(
            "judge_in_flight", "Requests being served by a backend now.", tag_keys=("backend",))
        self.queued = metrics.Gauge("judge_queued", "Requests waiting for a free slot.")
        self.retries = metrics.Counter(
            "judge_retries_total", "Attempts beyond the first.", tag_keys=("backend",))
        self.switches = metrics.Counter(
            "judge_backend_switches_total", "Changes of the effective backend.")
        self.cost = metrics.Counter(
            "judge_cost_usd_total", "Cost reported by the backends, in USD.",
            tag_keys=("backend",))
        self.tokens = metrics.Counter(
            "judge_tokens_total", "Tokens reported by the backends.",
            tag_keys=("backend", "direction"))
        self.failovers = metrics.Counter(
            "judge_failovers_total", "Moves to a fallback backend (LLM_JUDGE_FALLBACK).")
        self.cache_hits = metrics.Counter(
            "judge_cache_hits_total", "Verdicts answered from the cache or a shared call.")
        self.current = metrics.Gauge(
            "judge_current_backend",
            "1 for the backend new requests go to (after failover), 0 for the others.",
            tag_keys=("backend",))
        self._current: str | None = None

    def record(self, verdict: Verdict) -> None:
        backend = verdict.backend or "?"
        tags = {"backend": backend}
        self.requests.inc(1, {"backend": backend, "status": verdict.status.value})
        if verdict.cached:
            self.cache_hits.inc(1)
            return
        self.latency.observe(verdict.latency_s, tags)
        if verdict.attempts > 1:
            self.retries.inc(verdict.attempts - 1, tags)
        if verdict.cost_usd:
            self.cost.inc(verdict.cost_usd, tags)
        if verdict.input_tokens:
            self.tokens.inc(verdict.input_tokens, {"backend": backend, "direction": "input"})
        if verdict.output_tokens:
            self.tokens.inc(verdict.output_tokens, {"backend": backend, "direction": "output"})

    def set_in_flight(self, backend: str, n: int, queued: int) -> None:
        self.in_flight.set(n, {"backend": backend})
        self.queued.set(queued)

    def set_current(self, backend: str, *, switched: bool) -> None:
        if self._current is not None and self._current != backend:
            self.current.set(0, {"backend": self._current})
        self.current.set(1, {"backend": backend})
        self._current = backend
        if switched:
            self.switches.inc(1)
