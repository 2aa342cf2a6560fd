"""The judge's logic without Ray: what the ``judge`` actor (:mod:`.judge`) holds.

:class:`JudgeCore`: backend resolution, failover and spend budget, switch history, the
planning of requests (groups into chunks, comparisons into ordered pairs, cache keys),
the dispatcher with its limits and cache, the shift monitor and the status. Workers
(:class:`Workers`: Ray actors, or :class:`~.worker.LocalWorkers` in a test) and the clock
are injected, so all of this runs and is tested without a cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..config import JudgeConfig
from ..judging.catalog import JudgeCatalog
from ..judging.definition import JudgeDefinition
from ..judging.groups.pairwise import first_is_a as first_shown
from ..judging.groups.planning import (
    GroupCounts,
    assemble,
    chunk_requests,
    compare_verdict,
    pair_requests,
)
from ..judging.rubric import Rubric
from ..quality.monitors import QualityMonitors
from ..quality.switch_validation import SwitchValidation
from ..selection.override_file import permission_warnings
from ..selection.resolver import BackendResolver
from ..shift.monitor import DEFAULT_JUDGE, ShiftMonitor, ShiftReport, judge_of
from ..spec import BackendSpec
from ..verdict import GroupRequest, JudgeRequest, Verdict
from .budget import Budget
from .cache import Result, VerdictCache, cache_key, group_cache_key, stamped
from .dispatch import Dispatcher, Request
from .failover import FailoverChain
from .hedge_budget import HedgeBudget
from .metrics import JudgeMetrics
from .panels import Panels
from .pinning import Pin, batch_requests, submit_pinned
from .reward_servers import RewardServers
from .stats import JudgeStats
from .status import JudgeStatus
from .switches import SwitchHistory
from .worker import Workers

__all__ = ["JudgeCore", "stamped"]

logger = logging.getLogger(__name__)


class JudgeCore:
    """The judge without Ray: everything the ``judge`` actor does but carry the calls.

    Args:
        config: the judge's settings.
        catalog: its judges (the ``default`` one and the judges file's).
        rubric: the default judge's rubric (its text is part of every cache key).
        workers: where micro-batches go.
        metrics: the Prometheus instruments (:class:`JudgeMetrics`).
        node_id: the node the judge runs on, shown in :meth:`status`.
        clock: wall-clock time (switch history, uptime).
    """

    def __init__(self, config: JudgeConfig, catalog: JudgeCatalog, *, rubric: Rubric,
                 workers: Workers, metrics: JudgeMetrics, node_id: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.judges_catalog = catalog
        self.workers = workers
        self.metrics = metrics
        self.node_id = node_id
        self._clock = clock
        self.resolver = BackendResolver(config)
        self.started_at = clock()
        self.stats = JudgeStats()
        self.groups = GroupCounts()
        self.reward_servers = RewardServers()
        self.history = SwitchHistory(clock, on_current=metrics.set_current)
        self._pid = os.getpid()
        # Verdicts depend on the rubric: a changed rubric must not hit old entries.
        self._rubric_id = f"{rubric.score_max}:{rubric.template}"
        self.cache = VerdictCache(config.cache_size, config.cache_path)
        self.budget = Budget.of(config, clock=clock, store=self.cache, gauge=metrics.set_budget)
        self.failover = FailoverChain(
            config.fallback, probe_interval_s=config.probe_interval_s,
            rate_limited_budget=config.failover_rate_limited, diverts=self.budget.diverts)
        for name, hint in catalog.caching_hints():
            logger.info("judge %r: prompt caching hint: %s", name, hint)
        self.dispatcher = Dispatcher(
            num_workers=len(workers), send=self.budget.guard(self._send), route=self.route,
            limit_for=config.max_in_flight, rpm_for=config.rpm,
            tpm_for=config.tpm, on_verdict=self._record, reroute=self._learn,
            cache=self.cache, key_for=self._key, ping=workers.ping)
        self.hedges = HedgeBudget(
            config, self.dispatcher.limits, lambda: self.dispatcher.queued,
            charge=self.budget.charge_usd, on_release=metrics.record_hedge,
            on_refuse=metrics.record_hedge_refused)
        workers.use_permits(self.hedges)
        reference = config.calibration_reference
        self.shift = ShiftMonitor(
            capacity=config.reservoir_size, share=config.shift_share,
            warn=config.shift_warn, min_pairs=config.calibration_min_pairs,
            reference=None if reference is None else str(reference),
            calibration_of=self._calibration_of, limit_for=config.max_in_flight,
            send_spare=self.dispatcher.send_spare, serving=lambda: self.history.settled,
            store=self.cache, on_report=self._shift_gauges,
            version_of=lambda name: self._options(name).version)
        self.history.on_settled(self.shift.switched)
        self.validation = SwitchValidation.of(  # LLM_JUDGE_VALIDATION_FILE: None unset
            config, catalog, send_spare=self.dispatcher.send_spare,
            lanes_for=lambda spec: max(1, int(config.shift_share * config.max_in_flight(spec))),
            on_result=metrics.record_validation, clock=clock)
        if self.validation is not None:
            self.history.on_settled(self.validation.settled, initial=True)
        self.quality = QualityMonitors(config, catalog, send_spare=self.dispatcher.send_spare,
                                       serving=lambda: self.history.settled, metrics=metrics)
        self.panels = Panels(self.dispatcher.submit, catalog, config.panel_window,
                             metrics=metrics.panels, serving=lambda: self.history.settled,
                             on_served=self.quality.observe_panel)
        self.route()

    def __repr__(self) -> str:
        return f"JudgeCore(backend={self.history.current})"

    # -- scoring -----------------------------------------------------------------------

    async def score(self, prompt: str | list, response: str | list,
                    reference: str | None = None, rubric: str | None = None,
                    metadata: Any = None, *, judge: str | None = None,
                    fields: Mapping[str, str] | None = None, backend: str | None = None,
                    sample: int = 0) -> Verdict:
        """Grade one response with judge ``judge`` (``None``: default); ``fields`` are
        the extra inputs its template names; ``backend``/``sample`` as in
        :mod:`.pinning`. Raises TypeError/ValueError for malformed arguments, an unknown
        judge or a field the judge needs and lacks."""
        request = JudgeRequest(prompt, response, reference, rubric, metadata, judge, fields)
        self.judges_catalog.check(request)
        (verdict,) = await self._serve([request], [Pin.of(backend, sample)])
        return verdict  # type: ignore[return-value]

    async def score_batch(self, items: list[Mapping[str, Any]]) -> list[Verdict | list[Verdict]]:
        """Grade many responses; Verdicts come back in the order of ``items``.

        An item with ``"responses"`` (a list) instead of ``"response"`` is a group, judged
        as :meth:`score_group` does; its place in the answer holds its list of Verdicts.
        An item's ``backend`` and ``sample`` keys are as in :mod:`.pinning`.
        """
        requests, pins = batch_requests(items, self.judges_catalog)
        requests = [self._group_judge(r, "group", f"request[{i}]")
                    if isinstance(r, GroupRequest) else r for i, r in enumerate(requests)]
        if not requests:
            return []
        return await self._serve(requests, pins)

    async def score_group(self, prompt: str | list, responses: list,
                          reference: str | None = None, *, judge: str | None = None,
                          fields: Mapping[str, str] | None = None,
                          metadata: Any = None, backend: str | None = None,
                          sample: int = 0) -> list[Verdict]:
        """Grade a group of responses to one prompt in one judge call (per ``max_group``);
        one Verdict per response, in the order of ``responses``. ``judge`` names a judge
        of kind ``group`` (``None``: the built-in ``group``); ``fields`` are extra named
        texts shown to it, each in its own data block."""
        group = self._group_judge(GroupRequest(prompt, responses, reference, judge=judge,
                                               metadata=metadata, fields=fields),
                                  "group", "request")
        (verdicts,) = await self._serve([group], [Pin.of(backend, sample)])
        return verdicts

    async def compare(self, prompt: str | list, a: str | list, b: str | list,
                      reference: str | None = None, *, judge: str | None = None,
                      fields: Mapping[str, str] | None = None, metadata: Any = None,
                      backend: str | None = None, sample: int = 0) -> Verdict:
        """The preference for ``a`` over ``b`` in [0, 1] (1: ``a`` clearly better, 0.5: a
        tie), asked in both orders unless the judge says ``swap = false``. ``judge``
        names a judge of kind ``pairwise`` (``None``: the built-in ``pairwise``)."""
        pair = self._group_judge(GroupRequest(prompt, (a, b), reference, judge=judge,
                                              metadata=metadata, fields=fields),
                                 "pairwise", "request")
        pin = Pin.of(backend, sample)
        options = self._options(pair.judge)
        first_is_a = first_shown(*(x if isinstance(x, str) else json.dumps(x, sort_keys=True)
                                   for x in (prompt, a, b)), reference)
        calls = pair_requests(pair, swap=options.swap, first_is_a=first_is_a)
        if self.panels.convenes(pair, pin):  # a pairwise panel
            return await self.panels.compare(pair, calls, first_is_a=first_is_a, pin=pin)
        results = [stamped(r, options) for r in
                   await asyncio.gather(*self.dispatcher.submit(calls, pin.backend,
                                                                pin.sample))]
        verdict = compare_verdict(results, swap=options.swap, first_is_a=first_is_a,
                                  metadata=metadata, counts=self.groups)
        if verdict.ok and options.swap and not verdict.cached:
            try:
                self.metrics.record_comparison(
                    consistent=verdict.extra["position_consistent"])
            except Exception:  # metrics must never cost a caller its verdict
                logger.exception("recording a comparison failed")
        return verdict

    # -- control -----------------------------------------------------------------------

    def status(self) -> JudgeStatus:
        """Backend, where it comes from, load, counts, latency and cost."""
        resolution = self.resolver.resolve()
        now = self._clock()
        return JudgeStatus(
            backend=str(resolution.spec),
            serving=self.history.current,
            model=resolution.spec.model(self.config.ccode_models),
            source=resolution.source,
            override_file=str(resolution.path),
            override_problem=resolution.problem,
            # Checked here, on the file's node: whoever can write it changes the reward.
            override_warnings=permission_warnings(resolution.path),
            in_flight=self.dispatcher.in_flight(),
            queued=self.dispatcher.queued,
            workers=len(self.workers),
            switches=self.history.switches,
            recent_switches=list(self.history.recent),
            failover=self.failover.snapshot(),
            cache=self.cache.snapshot(),
            groups=self.groups.snapshot(),
            started_at=self.started_at,
            uptime_s=round(now - self.started_at, 1),
            pid=self._pid,
            node_id=self.node_id,
            judges=self.judges_catalog.versions(),
            limits={"ccode": self.config.max_in_flight_ccode,
                    "litellm": self.config.max_in_flight_litellm},
            shift=self.shift.snapshot(),
            calibration=self.shift.calibration_snapshot(),
            reservoir=self.shift.reservoir_snapshot(),
            reward_servers=self.reward_servers.snapshot(),
            budget=self.budget.snapshot(),
            hedging=self.hedges.snapshot(),
            validation=None if self.validation is None else self.validation.snapshot(),
            **self.quality.snapshot(),  # type: ignore[typeddict-item]
            panels=self.panels.snapshot(),
            **self.stats.snapshot(),  # type: ignore[typeddict-item]
        )

    def refresh_backend(self) -> dict[str, Any]:
        """Re-read the override file now (the switch CLI calls this after writing it)."""
        resolution = self.resolver.refresh()
        return {"backend": str(resolution.spec), "source": resolution.source,
                "override_file": str(resolution.path), "problem": resolution.problem}

    async def aclose(self) -> None:
        """Stop the shift monitor and validations, close the cache file and the workers'
        backends."""
        await self.shift.aclose()
        if self.validation is not None:
            await self.validation.aclose()
        await self.quality.aclose()
        self.cache.close()
        await self.workers.aclose()

    # -- internals ---------------------------------------------------------------------

    def route(self) -> tuple[BackendSpec, int | None]:
        """The backend for the next request and its cap (1 for a half-open probe), noting
        a switch, a failover or a return in the history."""
        primary = self.resolver.resolve().spec
        if self.validation is not None:  # a gated switch waits for its validation
            primary = self.validation.primary(primary)
        before = self.failover.failovers
        spec, cap = self.failover.route(primary)
        if self.failover.failovers != before:
            self.metrics.failovers.inc(1)
        self.history.note(spec, primary, cap)
        return spec, cap

    def _served(self, request: JudgeRequest, verdict: Verdict) -> Verdict:
        """Sample it for shift measurement and the quality monitors, count its score,
        calibrate it if asked."""
        try:
            self.shift.observe(request, verdict)
            self.quality.observe(request, verdict)  # canaries, length bias
            self.metrics.record_score(verdict, judge_of(request))
            return self.shift.calibrate(request, verdict)
        except Exception:  # bookkeeping must never cost a caller its verdict
            logger.exception("recording a verdict for shift measurement failed")
            return verdict

    def _calibration_of(self, judge: str) -> str:
        """``calibrate`` of the judge's definition; for ``default`` without one, the setting."""
        try:
            chosen = self._options(judge).calibrate
        except ValueError:  # not a judge of this catalog: nothing to calibrate
            return "none"
        if chosen is None:
            return self.config.calibrate if judge == DEFAULT_JUDGE else "none"
        return chosen

    def _shift_gauges(self, report: ShiftReport) -> None:
        self.metrics.set_shift(report.judge, report.stats.mean, report.stats.spearman)

    def _learn(self, verdict: Verdict) -> bool:
        """Feed the failover chain; True when the request should go to another backend."""
        self.failover.report(verdict)
        return not verdict.ok and self.failover.can_reroute(verdict, self.history.primary)

    async def _serve(self, requests: list[JudgeRequest | GroupRequest], pins: list[Pin]
                     ) -> list[Verdict | list[Verdict]]:
        """Submit singles and groups (split into chunks) at once; results in order."""
        flat: list[Request] = []
        flat_pins: list[Pin] = []
        plans = []
        for request, pin in zip(requests, pins, strict=True):
            if isinstance(request, GroupRequest) and not self.panels.convenes(request, pin):
                plan, chunks = chunk_requests(request, self._options(request.judge).max_group)
                plans.append((request, plan, len(flat), len(chunks)))
                flat.extend(chunks)
            else:
                plans.append((request, None, len(flat), 1))
                flat.append(request)
            flat_pins.extend([pin] * (len(flat) - len(flat_pins)))
        results: list[Result] = list(await asyncio.gather(*self.panels.submit(
            flat, flat_pins, lambda r, p: submit_pinned(self.dispatcher, r, p))))
        out: list[Verdict | list[Verdict]] = []
        for request, plan, start, n in plans:
            if plan is None:
                as_is = self.panels.as_is(request, flat_pins[start])  # pinned, or a panel's
                out.append(results[start] if as_is  # type: ignore[arg-type]
                           else self._served(request, results[start]))  # type: ignore[arg-type]
                continue
            saved, judged = self.groups.calls_saved, self.groups.groups
            definition = self._options(request.judge)
            chunks = [stamped(r, definition) for r in results[start:start + n]]
            out.append(assemble(request, plan, chunks, self.groups))
            if not flat_pins[start].pinned:  # a caller's group: canaries, length bias
                for call, verdicts in zip(flat[start:start + n], chunks, strict=True):
                    self.quality.observe_group(call, verdicts)  # type: ignore[arg-type]
            if self.groups.groups != judged:  # not all from the cache
                try:
                    self.metrics.record_group(saved=self.groups.calls_saved - saved,
                                              split=plan.split)
                except Exception:  # metrics must never cost a caller its verdicts
                    logger.exception("recording a group's metrics failed")
        return out

    def _options(self, name: str | None) -> JudgeDefinition:
        return self.judges_catalog.get(name)

    def _group_judge(self, request: GroupRequest, kind: str, where: str) -> GroupRequest:
        """``request`` with its judge named; ValueError unless that judge is a ``kind``
        judge (score_group and group items take group judges, compare a pairwise one)."""
        name = request.judge or kind  # the built-in "group" and "pairwise" judges
        try:
            definition = self.judges_catalog.get(name)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if definition.kind != kind:
            known = [d.name for d in self.judges_catalog if d.kind == kind]
            raise ValueError(f"{where}.judge {name!r} is not a {kind} judge (its kind is "
                             f"{definition.kind!r}); {kind} judges: {', '.join(known)}")
        return request if request.judge == name else dataclasses.replace(request, judge=name)

    def _key(self, spec: BackendSpec, request: Request) -> str:
        model = spec.model(self.config.ccode_models)
        judge = self.judges_catalog.get(request.judge)
        if isinstance(request, GroupRequest):
            return group_cache_key(str(spec), model, f"{judge.name}:{judge.version}", request)
        return cache_key(str(spec), model, f"{self._rubric_id}|{judge.name}:{judge.version}",
                         request)

    async def _send(self, worker: int, spec: str, requests: list[Request]) -> list[Result]:
        self._gauge(spec)
        self.hedges.dispatched(len(requests))
        try:
            return await self.workers.send(worker, spec, requests)
        finally:
            # The dispatcher frees these slots only after we return: count them out now,
            # or the gauge keeps the last busy value once the pool goes idle.
            self._gauge(spec, done=len(requests))

    def _record(self, verdict: Verdict) -> None:
        self.hedges.observe(verdict)
        self.stats.record(verdict)
        self.metrics.record(verdict)

    def _gauge(self, spec: str, done: int = 0) -> None:
        in_flight = self.dispatcher.in_flight().get(spec, 0) - done
        self.metrics.set_in_flight(spec, max(0, in_flight), self.dispatcher.queued)
