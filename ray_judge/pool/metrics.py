"""Prometheus metrics of the judge, through ``ray.util.metrics``.

They are exported by every node's metrics agent with the ``ray_`` prefix (for example
``ray_judge_requests_total``) and so appear in the Ray dashboard's metrics view.
Only the singleton records them, once per verdict, so totals are exact.

Ray forgets a gauge about 20 s after it was last set (measured with Ray 2.60), so the
gauges (current backend, in flight, queued) are set again every few seconds: an idle
judge still shows which backend it would use, and 0 in flight, rather than no data.

The counters without labels (switches, failovers, cache hits, group counts) are exported
at 0 from the start. Prometheus' ``rate()``/``increase()`` only see a counter grow from a sample it
already has, so a counter that first appears at 1 would hide the first switch or
failover of a run, the one a dashboard's markers exist for.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..judging.hedging import HedgeReport
from ..verdict import Verdict
from .panel_metrics import PanelMetrics

__all__ = ["JudgeMetrics"]

_SCORE_BOUNDARIES = [round(0.1 * i, 1) for i in range(1, 11)]
_LATENCY_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300]
#: Seconds between re-settings of the gauges; well inside Ray's ~20 s.
GAUGE_REFRESH_S = 5.0


def _export_zero(counter: Any) -> None:
    # Counter.inc() refuses 0, but a point of 0 is what makes the series exist; Ray's
    # own record path takes it (checked against the endpoint in tests/system/test_metrics.py).
    counter._record(0)


class JudgeMetrics:
    """The judge's metrics; constructing it needs a connected Ray worker (an actor).

    Args:
        gauge_refresh_s: seconds between re-settings of the gauges; None: never.
        instruments: where ``Counter``, ``Gauge`` and ``Histogram`` come from; by default
            ``ray.util.metrics`` (a test of the judge's logic without Ray passes its own).
    """

    def __init__(self, gauge_refresh_s: float | None = GAUGE_REFRESH_S, *,
                 instruments: Any = None) -> None:
        if instruments is None:
            from ray.util import metrics
        else:
            metrics = instruments

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
            "judge_retries_total",
            "Attempts beyond the first (correction turns not counted; a group call's once).",
            tag_keys=("backend",))
        self.format_retries = metrics.Counter(
            "judge_format_retries_total",
            "Correction turns after answers that did not parse (a group call's once).",
            tag_keys=("backend",))
        self.switches = metrics.Counter(
            "judge_backend_switches_total", "Changes of the effective backend.")
        self.cost = metrics.Counter(
            "judge_cost_usd_total", "Cost reported by the backends, in USD.",
            tag_keys=("backend",))
        self.tokens = metrics.Counter(
            "judge_tokens_total", "Tokens reported by the backends.",
            tag_keys=("backend", "direction"))
        self.prompt_cache_tokens = metrics.Counter(
            "judge_prompt_cache_tokens_total",
            "Input tokens the providers read from or wrote to their prompt caches (a part "
            "of judge_tokens_total's input; not the verdict cache), by backend and kind.",
            tag_keys=("backend", "kind"))
        self.failovers = metrics.Counter(
            "judge_failovers_total", "Moves to a fallback backend (LLM_JUDGE_FALLBACK).")
        self.cache_hits = metrics.Counter(
            "judge_cache_hits_total", "Verdicts answered from the cache or a shared call.")
        self.group_calls_saved = metrics.Counter(
            "judge_group_calls_saved_total",
            "Backend calls saved by judging groups in one call (members minus calls made).")
        self.groups_split = metrics.Counter(
            "judge_groups_split_total", "Groups larger than max_group, judged in chunks.")
        self.position_inconsistent = metrics.Counter(
            "judge_position_inconsistent_total",
            "Comparisons whose two orders disagreed beyond the threshold.")
        self.current = metrics.Gauge(
            "judge_current_backend",
            "1 for the backend new requests go to (after failover), 0 for the others.",
            tag_keys=("backend",))
        self.score = metrics.Histogram(
            "judge_score", "Scores of ok verdicts as the backend gave them (before any "
            "calibration), by backend and judge.",
            boundaries=_SCORE_BOUNDARIES, tag_keys=("backend", "judge"))
        self.shift = metrics.Gauge(
            "judge_score_shift", "Mean score change (new - old backend) on the same requests "
            "since the latest switch.", tag_keys=("judge",))
        self.rank_correlation = metrics.Gauge(
            "judge_score_rank_correlation", "Spearman correlation of the old and new "
            "backend's scores on the same requests since the latest switch.",
            tag_keys=("judge",))
        self.budget_spent = metrics.Gauge(
            "judge_budget_spent_usd", "US dollars billed backends cost, in the run and in "
            "the last hour (what LLM_JUDGE_BUDGET_USD limits).", tag_keys=("window",))
        self.budget_limit = metrics.Gauge(
            "judge_budget_limit_usd", "The spend limits of LLM_JUDGE_BUDGET_USD, by window.",
            tag_keys=("window",))
        self.hedges = metrics.Counter(
            "judge_hedges_total", "Hedged calls (a late call sent again), by the backend the "
            "hedge went to and which call won: hedge, first, or none (both failed).",
            tag_keys=("backend", "winner"))
        self.hedges_refused = metrics.Counter(
            "judge_hedges_refused_total", "Late calls not hedged, by reason (share cap, "
            "in-flight limit, rate, tokens, queued requests, rate limited).",
            tag_keys=("reason",))
        self.hedge_loser_cost = metrics.Counter(
            "judge_hedge_loser_cost_usd_total", "What hedges' losing calls cost when the "
            "provider finished them anyway, in USD (not in judge_cost_usd_total).")
        self.validation = metrics.Gauge(
            "judge_validation_metric", "The latest validation of a backend on the labelled "
            "cases (LLM_JUDGE_VALIDATION_FILE), by backend and figure.",
            tag_keys=("backend", "metric"))
        self.validation_passed = metrics.Gauge(
            "judge_validation_passed", "1 when a backend's latest validation met the gate "
            "(or had none), 0 when it fell short.", tag_keys=("backend",))
        # Is the reward right (ray_judge.quality): canaries and length bias.
        self.canaries = metrics.Counter(
            "judge_canaries_total", "Canaries (known-bad answers) judged in the background, "
            "by judge, backend, kind and result: passed (the judge was fooled), caught, "
            "failed (no score).", tag_keys=("judge", "backend", "kind", "result"))
        self.canary_rate = metrics.Gauge(
            "judge_canary_pass_rate", "Share of a canary kind's judged canaries that passed "
            "(bound=rate) and its Wilson 95% interval (bound=low, high).",
            tag_keys=("judge", "backend", "kind", "bound"))
        self.canary_cost = metrics.Counter(
            "judge_canary_cost_usd_total", "What canary calls cost, in USD (not in "
            "judge_cost_usd_total).", tag_keys=("backend",))
        self.length_correlation = metrics.Gauge(
            "judge_length_score_correlation", "Spearman correlation of response length and "
            "score over the latest ok verdicts.", tag_keys=("judge", "backend"))
        self.length_quartile = metrics.Gauge(
            "judge_length_quartile_score", "Mean score of the latest ok verdicts by length "
            "quartile (1: shortest).", tag_keys=("judge", "backend", "quartile"))
        for counter in (self.switches, self.failovers, self.cache_hits,
                        self.group_calls_saved, self.groups_split, self.position_inconsistent,
                        self.hedge_loser_cost):
            _export_zero(counter)
        self._current: str | None = None
        self._gauges: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self.panels = PanelMetrics(metrics, self._set)  # judge panels (issue 23)
        # A thread, not a task: the actor's event loop is not running yet when this is
        # built, and re-setting a handful of values is not I/O.
        if gauge_refresh_s is not None:
            threading.Thread(target=self._keep_gauges, args=(gauge_refresh_s,), daemon=True,
                             name="ray_judge-gauges").start()

    def record(self, verdict: Verdict) -> None:
        backend = verdict.backend or "?"
        tags = {"backend": backend}
        self.requests.inc(1, {"backend": backend, "status": verdict.status.value})
        if verdict.spent_elsewhere:
            if verdict.cached:
                self.cache_hits.inc(1)
            return
        self.latency.observe(verdict.latency_s, tags)
        if verdict.counts_call:
            if verdict.transport_retries:
                self.retries.inc(verdict.transport_retries, tags)
            if verdict.format_retries:
                self.format_retries.inc(verdict.format_retries, tags)
        if verdict.cost_usd:
            self.cost.inc(verdict.cost_usd, tags)
        if verdict.input_tokens:
            self.tokens.inc(verdict.input_tokens, {"backend": backend, "direction": "input"})
        if verdict.output_tokens:
            self.tokens.inc(verdict.output_tokens, {"backend": backend, "direction": "output"})
        for kind, n in (("read", verdict.cache_read_tokens),
                        ("write", verdict.cache_write_tokens)):
            if n:
                self.prompt_cache_tokens.inc(n, {"backend": backend, "kind": kind})

    def record_score(self, verdict: Verdict, judge: str) -> None:
        if verdict.ok and verdict.score is not None:
            self.score.observe(verdict.score, {"backend": verdict.backend or "?", "judge": judge})

    def record_canary(self, judge: str, backend: str, kind: str, *, result: str, tally: Any,
                      verdict: Verdict) -> None:
        """One canary verdict (``result``: passed, caught or failed) and its kind's tally
        (:class:`~ray_judge.quality.canaries.Tally`)."""
        tags = {"judge": judge, "backend": backend, "kind": kind}
        self.canaries.inc(1, {**tags, "result": result})
        if verdict.cost_usd:
            self.canary_cost.inc(verdict.cost_usd, {"backend": backend})
        interval = tally.interval
        if interval is not None:
            self._set(self.canary_rate, tally.passed / tally.judged, {**tags, "bound": "rate"})
            self._set(self.canary_rate, interval[0], {**tags, "bound": "low"})
            self._set(self.canary_rate, interval[1], {**tags, "bound": "high"})

    def set_length_bias(self, judge: str, backend: str, stats: Any) -> None:
        """A length window's figures (:class:`~ray_judge.quality.length_bias.LengthStats`)."""
        tags = {"judge": judge, "backend": backend}
        if stats.spearman is not None:
            self._set(self.length_correlation, stats.spearman, tags)
        for q in stats.quartiles:
            self._set(self.length_quartile, q["mean_score"],
                      {**tags, "quartile": str(q["quartile"])})

    def set_shift(self, judge: str, mean: float | None, spearman: float | None) -> None:
        if mean is not None:
            self._set(self.shift, mean, {"judge": judge})
        if spearman is not None:
            self._set(self.rank_correlation, spearman, {"judge": judge})

    def record_group(self, *, saved: int, split: bool) -> None:
        """One group judged (not from the cache): calls saved, whether it was split."""
        if saved > 0:
            # Ray counters only go up (inc(0) raises); a fallback that cost more than it
            # saved shows in status()'s calls_saved, which may go down.
            self.group_calls_saved.inc(saved)
        if split:
            self.groups_split.inc(1)

    def record_comparison(self, *, consistent: bool) -> None:
        if not consistent:
            self.position_inconsistent.inc(1)

    def record_hedge(self, report: HedgeReport) -> None:
        """A hedge is over (a permit that came back unused is not a hedge)."""
        if report.winner == "unsent":
            return
        self.hedges.inc(1, {"backend": report.spec, "winner": report.winner})
        if report.loser_cost_usd:
            self.hedge_loser_cost.inc(report.loser_cost_usd)

    def record_validation(self, validation: Any) -> None:
        """A finished validation (:class:`~ray_judge.quality.switch_validation.Validation`)."""
        for name in ("ok", "spearman", "pearson", "mae", "in_range", "accuracy", "kappa",
                     "kendall_tau"):
            value = validation.metrics.get(name)
            if isinstance(value, (int, float)):
                self._set(self.validation, value, {"backend": validation.backend,
                                                   "metric": name})
        self._set(self.validation_passed, float(validation.state != "failed"),
                  {"backend": validation.backend})

    def record_hedge_refused(self, reason: str) -> None:
        self.hedges_refused.inc(1, {"reason": reason})

    def set_in_flight(self, backend: str, n: int, queued: int) -> None:
        self._set(self.in_flight, n, {"backend": backend})
        self._set(self.queued, queued)

    def set_budget(self, budget: dict[str, Any]) -> None:
        """The spend of :meth:`~.budget.Budget.snapshot` and its limits, by window."""
        for window, spent, limit in (("run", "spent_usd", "limit_usd"),
                                     ("hour", "hour_spent_usd", "hour_limit_usd")):
            self._set(self.budget_spent, budget[spent], {"window": window})
            if budget[limit] is not None:
                self._set(self.budget_limit, budget[limit], {"window": window})

    def set_current(self, backend: str, *, switched: bool) -> None:
        if self._current is not None and self._current != backend:
            self._set(self.current, 0, {"backend": self._current})
        self._set(self.current, 1, {"backend": backend})
        self._current = backend
        if switched:
            self.switches.inc(1)

    def _set(self, gauge: Any, value: float, tags: dict[str, str] | None = None) -> None:
        with self._lock:
            gauge.set(value, tags)
            self._gauges[(id(gauge), tuple(sorted((tags or {}).items())))] = (gauge, value)

    def _keep_gauges(self, every_s: float) -> None:
        while True:
            time.sleep(every_s)
            with self._lock:
                for (_, tags), (gauge, value) in self._gauges.items():
                    gauge.set(value, dict(tags) or None)
