"""The singleton actor ``judge``: backend resolution, the queue, workers, status, metrics.

Use :func:`ray_judge.start_judge` to create it; rollout workers anywhere in the cluster
get it with ``ray.get_actor("judge", namespace="ray_judge")``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..config import JudgeConfig
from ..judging.catalog import JudgeCatalog
from ..judging.definition import JudgeDefinition
from ..judging.rubric import load_rubric
from ..selection.override_file import permission_warnings
from ..selection.resolver import BackendResolver
from ..selection.spec import BackendSpec
from ..verdict import JudgeRequest, Verdict
from .cache import VerdictCache, cache_key
from .dispatch import Dispatcher, WorkerLost
from .failover import FailoverChain
from .metrics import JudgeMetrics
from .stats import JudgeStats
from .worker import JudgeWorker

__all__ = ["CONTROL_GROUP", "Judge"]

logger = logging.getLogger(__name__)

CONTROL_GROUP = "control"
_WorkerActor = ray.remote(JudgeWorker)


def _batch(items: object, judges: JudgeCatalog) -> list[JudgeRequest]:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, (list, tuple)):
        raise TypeError(f"score_batch expects a list of dicts, got {type(items).__name__}")
    requests = [JudgeRequest.from_mapping(item, index=i) for i, item in enumerate(items)]
    for i, request in enumerate(requests):
        judges.check(request, index=i)
    return requests


@ray.remote(concurrency_groups={CONTROL_GROUP: 4})
class Judge:
    """The judge singleton. Create it through :func:`ray_judge.start_judge`.

    Scoring methods run on the default concurrency group; ``status`` and
    ``refresh_backend`` on their own, so they answer at once with thousands queued.
    """

    def __init__(self, env: Mapping[str, str], cwd: str,
                 registry: Mapping[str, str] | None = None,
                 judges: Sequence[JudgeDefinition] = ()) -> None:
        os.environ.update(env)
        self.config = JudgeConfig.from_env(os.environ, cwd=Path(cwd))
        self.resolver = BackendResolver(self.config)
        self.started_at = time.time()
        self.stats = JudgeStats()
        self.metrics = JudgeMetrics()
        self._current: str | None = None
        self._primary: BackendSpec | None = None
        self._switches = 0
        self._pid = os.getpid()
        rubric = load_rubric(self.config)  # also fails start-up on a bad rubric file
        # The judges file is read here, once; workers get the definitions themselves, in
        # their constructor arguments, so a restarted worker has them too.
        self.judges_catalog = JudgeCatalog.build(self.config, rubric=rubric, judges=judges)
        node_id = ray.get_runtime_context().get_node_id()
        placement = NodeAffinitySchedulingStrategy(node_id=node_id, soft=True)
        self.workers = [
            _WorkerActor.options(
                num_cpus=self.config.worker_cpus, max_restarts=-1, max_task_retries=0,
                max_concurrency=100_000, scheduling_strategy=placement,
            ).remote(i, dict(env), cwd, dict(registry or {}), list(self.judges_catalog))
            for i in range(self.config.num_workers)
        ]
        self.failover = FailoverChain(
            self.config.fallback, probe_interval_s=self.config.probe_interval_s,
            rate_limited_budget=self.config.failover_rate_limited)
        # Verdicts depend on the rubric: a changed rubric must not hit old entries.
        self._rubric_id = f"{rubric.score_max}:{rubric.template}"
        self.cache = VerdictCache(self.config.cache_size, self.config.cache_path)
        self.dispatcher = Dispatcher(
            num_workers=len(self.workers), send=self._send, route=self._route,
            limit_for=self.config.max_in_flight, rpm_for=self.config.rpm,
            tpm_for=self.config.tpm, on_verdict=self._record, reroute=self._learn,
            cache=self.cache, key_for=self._key)
        spec, _ = self._route()
        logger.info("judge started: backend %s, %d workers, override file %s",
                    spec, len(self.workers), self.config.backend_file)

    def __repr__(self) -> str:
        return f"Judge(backend={self._current})"

    # -- scoring -----------------------------------------------------------------------

    async def score(self, prompt: str | list, response: str | list,
                    reference: str | None = None, rubric: str | None = None,
                    metadata: Any = None, *, judge: str | None = None,
                    fields: Mapping[str, str] | None = None) -> Verdict:
        """Grade one response with judge ``judge`` (``None``: default); ``fields`` are
        the extra inputs its template names. Raises TypeError/ValueError for malformed
        arguments, an unknown judge or a field the judge needs and lacks."""
        request = JudgeRequest(prompt, response, reference, rubric, metadata, judge, fields)
        self.judges_catalog.check(request)
        (future,) = self.dispatcher.submit([request])
        return await future

    async def score_batch(self, items: list[Mapping[str, Any]]) -> list[Verdict]:
        """Grade many responses; Verdicts come back in the order of ``items``."""
        requests = _batch(items, self.judges_catalog)
        if not requests:
            return []
        return list(await asyncio.gather(*self.dispatcher.submit(requests)))

    # -- control -----------------------------------------------------------------------

    @ray.method(concurrency_group=CONTROL_GROUP)
    def status(self) -> dict[str, Any]:
        """Backend, where it comes from, load, counts, latency and cost."""
        resolution = self.resolver.resolve()
        return {
            "backend": str(resolution.spec),
            "serving": self._current,
            "model": resolution.spec.model(self.config.ccode_models),
            "source": resolution.source,
            "override_file": str(resolution.path),
            "override_problem": resolution.problem,
            # Checked here, on the file's node: whoever can write it can change the reward.
            "override_warnings": permission_warnings(resolution.path),
            "in_flight": self.dispatcher.in_flight(),
            "queued": self.dispatcher.queued,
            "workers": len(self.workers),
            "switches": self._switches,
            "failover": self.failover.snapshot(),
            "cache": self.cache.snapshot(),
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "pid": self._pid,
            "node_id": ray.get_runtime_context().get_node_id(),
            "judges": self.judges_catalog.versions(),
            "limits": {"ccode": self.config.max_in_flight_ccode,
                       "litellm": self.config.max_in_flight_litellm},
            **self.stats.snapshot(),
        }

    @ray.method(concurrency_group=CONTROL_GROUP)
    def judges(self) -> dict[str, str]:
        """The judges this judge knows: name -> version."""
        return self.judges_catalog.versions()

    @ray.method(concurrency_group=CONTROL_GROUP)
    def refresh_backend(self) -> dict[str, Any]:
        """Re-read the override file now (the switch CLI calls this after writing it)."""
        resolution = self.resolver.refresh()
        return {"backend": str(resolution.spec), "source": resolution.source,
                "override_file": str(resolution.path), "problem": resolution.problem}

    @ray.method(concurrency_group=CONTROL_GROUP)
    async def workers_info(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Index, pid and liveness of each worker actor (for dashboards and tests)."""

        async def one(i: int, worker: Any) -> dict[str, Any]:
            try:
                pid = await asyncio.wait_for(worker.ping.remote(), timeout_s)
            except Exception as exc:
                return {"index": i, "alive": False, "error": type(exc).__name__}
            return {"index": i, "alive": True, "pid": pid}

        return list(await asyncio.gather(*(one(i, w) for i, w in enumerate(self.workers))))

    @ray.method(concurrency_group=CONTROL_GROUP)
    def ping(self) -> str:
        return "pong"

    async def shutdown(self) -> None:
        """Close the workers' backends (kills CLI processes); the caller then kills actors."""
        self.cache.close()
        await asyncio.gather(*(w.aclose.remote() for w in self.workers),
                             return_exceptions=True)

    # -- internals ---------------------------------------------------------------------

    def _route(self) -> tuple[BackendSpec, int | None]:
        primary = self.resolver.resolve().spec
        self._primary = primary
        before = self.failover.failovers
        spec, cap = self.failover.route(primary)
        if self.failover.failovers != before:
            self.metrics.failovers.inc(1)
        text = str(spec)
        if text != self._current:
            switched = self._current is not None
            if switched:
                self._switches += 1
            self._current = text
            self.metrics.set_current(text, switched=switched)
        return spec, cap

    def _learn(self, verdict: Verdict) -> bool:
        """Feed the failover chain; True when the request should go to another backend."""
        self.failover.report(verdict)
        return not verdict.ok and self.failover.can_reroute(verdict, self._primary)

    def _key(self, spec: BackendSpec, request: JudgeRequest) -> str:
        judge = self.judges_catalog.get(request.judge)
        return cache_key(str(spec), spec.model(self.config.ccode_models),
                         f"{self._rubric_id}|{judge.name}:{judge.version}", request)

    async def _send(self, worker: int, spec: str, requests: list[JudgeRequest]) -> list[Verdict]:
        self._gauge(spec)
        try:
            return await self.workers[worker].judge_batch.remote(spec, requests)
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            raise WorkerLost(f"worker {worker}: {type(exc).__name__}") from None
        finally:
            # The dispatcher frees these slots only after we return: count them out now,
            # or the gauge keeps the last busy value once the pool goes idle.
            self._gauge(spec, done=len(requests))

    def _record(self, verdict: Verdict) -> None:
        self.stats.record(verdict)
        self.metrics.record(verdict)

    def _gauge(self, spec: str, done: int = 0) -> None:
        in_flight = self.dispatcher.in_flight().get(spec, 0) - done
        self.metrics.set_in_flight(spec, max(0, in_flight), self.dispatcher.queued)
