"""The singleton actor ``judge``: a thin Ray shell around :class:`~.core.JudgeCore`.

Use :func:`ray_judge.start_judge` to create it; rollout workers anywhere in the cluster
get it with ``ray.get_actor("judge", namespace="ray_judge")``. Everything it decides is
the core's; this module starts the worker actors, carries calls, and keeps the control
methods in their own concurrency group.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..config import JudgeConfig
from ..judging.catalog import JudgeCatalog
from ..judging.definition import JudgeDefinition
from ..judging.hedging import HedgePermits, HedgeReport
from ..judging.rubric import load_rubric
from ..verdict import Verdict
from . import collector
from .cache import Result
from .core import JudgeCore
from .dispatch import Request, WorkerLost
from .metrics import JudgeMetrics
from .status import JudgeStatus
from .worker import JudgeWorker

__all__ = ["CONTROL_GROUP", "Judge", "RayWorkers"]

logger = logging.getLogger(__name__)

CONTROL_GROUP = "control"
_WorkerActor = ray.remote(JudgeWorker)


class ActorPermits:
    """A worker's hedge permits, asked of the judge actor (it holds the limits)."""

    def __init__(self, judge: Any) -> None:
        self.judge = judge

    async def acquire(self, spec: str) -> bool:
        return bool(await self.judge.hedge_permit.remote(spec))

    def release(self, report: HedgeReport) -> None:
        self.judge.hedge_done.remote(report)  # no need to wait for the count


class RayWorkers:
    """The judge's worker actors, on its own node, restarted by Ray when they die.

    ``judge`` is the judge actor's own handle: workers ask it for hedge permits.
    """

    def __init__(self, config: JudgeConfig, env: Mapping[str, str], cwd: str,
                 registry: Mapping[str, str], judges: list[JudgeDefinition], *,
                 judge: Any = None) -> None:
        permits = None if judge is None else ActorPermits(judge)
        placement = NodeAffinitySchedulingStrategy(
            node_id=ray.get_runtime_context().get_node_id(), soft=True)
        self.actors = [
            _WorkerActor.options(
                num_cpus=config.worker_cpus, max_restarts=-1, max_task_retries=0,
                max_concurrency=100_000, scheduling_strategy=placement,
            ).remote(i, dict(env), cwd, dict(registry), judges, permits=permits)
            for i in range(config.num_workers)
        ]

    def __len__(self) -> int:
        return len(self.actors)

    async def send(self, worker: int, spec: str, requests: list[Request]) -> list[Result]:
        try:
            return await self.actors[worker].judge_batch.remote(spec, requests)
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            raise WorkerLost(f"worker {worker}: {type(exc).__name__}") from None

    def ping(self, worker: int) -> Any:
        return self.actors[worker].ping.remote()

    def use_permits(self, permits: HedgePermits) -> None:
        """Nothing to do: the actors were given the judge actor's handle to ask."""

    async def aclose(self) -> None:
        await asyncio.gather(*(w.aclose.remote() for w in self.actors),
                             return_exceptions=True)


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
        config = JudgeConfig.from_env(os.environ, cwd=Path(cwd))
        collector.tune(config.gc_threshold)
        rubric = load_rubric(config)  # also fails start-up on a bad rubric file
        # The judges file is read here, once; workers get the definitions themselves, in
        # their constructor arguments, so a restarted worker has them too.
        catalog = JudgeCatalog.build(config, rubric=rubric, judges=judges)
        workers = RayWorkers(config, env, cwd, registry or {}, list(catalog),
                             judge=ray.get_runtime_context().current_actor)
        self.core = JudgeCore(config, catalog, rubric=rubric, workers=workers,
                              metrics=JudgeMetrics(),
                              node_id=ray.get_runtime_context().get_node_id())
        collector.freeze(config.gc_threshold, "judge")  # Ray, the catalog, the cache
        logger.info("judge started: backend %s, %d workers, override file %s",
                    self.core.status()["serving"], len(workers), config.backend_file)

    def __repr__(self) -> str:
        return f"Judge({self.core!r})"

    # -- scoring: see JudgeCore for the arguments ----------------------------------------

    async def score(self, prompt: str | list, response: str | list,
                    reference: str | None = None, rubric: str | None = None,
                    metadata: Any = None, *, judge: str | None = None,
                    fields: Mapping[str, str] | None = None, backend: str | None = None,
                    sample: int = 0) -> Verdict:
        """Grade one response (:meth:`JudgeCore.score`)."""
        return await self.core.score(prompt, response, reference, rubric, metadata,
                                     judge=judge, fields=fields, backend=backend,
                                     sample=sample)

    async def score_batch(self, items: list[Mapping[str, Any]]) -> list[Verdict | list[Verdict]]:
        """Grade many responses and groups, in order (:meth:`JudgeCore.score_batch`)."""
        return await self.core.score_batch(items)

    async def score_group(self, prompt: str | list, responses: list,
                          reference: str | None = None, *, judge: str | None = None,
                          fields: Mapping[str, str] | None = None,
                          metadata: Any = None, backend: str | None = None,
                          sample: int = 0) -> list[Verdict]:
        """Grade a group in one judge call (:meth:`JudgeCore.score_group`)."""
        return await self.core.score_group(prompt, responses, reference, judge=judge,
                                           fields=fields, metadata=metadata,
                                           backend=backend, sample=sample)

    async def compare(self, prompt: str | list, a: str | list, b: str | list,
                      reference: str | None = None, *, judge: str | None = None,
                      fields: Mapping[str, str] | None = None, metadata: Any = None,
                      backend: str | None = None, sample: int = 0) -> Verdict:
        """The preference for ``a`` over ``b`` (:meth:`JudgeCore.compare`)."""
        return await self.core.compare(prompt, a, b, reference, judge=judge, fields=fields,
                                       metadata=metadata, backend=backend, sample=sample)

    # -- hedged calls: asked by the workers, on the scoring loop (the limits live there) --

    async def hedge_permit(self, spec: str) -> bool:
        """May a worker hedge a late call to ``spec`` now (:class:`~.hedge_budget.HedgeBudget`)."""
        return await self.core.hedges.acquire(spec)

    async def hedge_done(self, report: HedgeReport) -> None:
        """A hedge is over: its slot back, its outcome counted."""
        self.core.hedges.release(report)

    # -- control -----------------------------------------------------------------------

    @ray.method(concurrency_group=CONTROL_GROUP)
    def status(self) -> JudgeStatus:
        """Backend, where it comes from, load, counts, latency and cost."""
        return self.core.status()

    @ray.method(concurrency_group=CONTROL_GROUP)
    def note_reward_server(self, record: dict[str, Any], running: bool = True) -> None:
        """A reward server's announcement, or its goodbye (``ray-judge serve-rm`` sends
        them; ``status()["reward_servers"]`` shows them)."""
        self.core.reward_servers.note(record, running)

    @ray.method(concurrency_group=CONTROL_GROUP)
    def shift_pairs(self) -> dict[str, Any]:
        """Per judge: the latest shift report with its paired scores and fitted map."""
        return self.core.shift.pairs()

    @ray.method(concurrency_group=CONTROL_GROUP)
    def judges(self) -> dict[str, str]:
        """The judges this judge knows: name -> version."""
        return self.core.judges_catalog.versions()

    @ray.method(concurrency_group=CONTROL_GROUP)
    def refresh_backend(self) -> dict[str, Any]:
        """Re-read the override file now (the switch CLI calls this after writing it)."""
        return self.core.refresh_backend()

    @ray.method(concurrency_group=CONTROL_GROUP)
    async def workers_info(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Index, pid and liveness of each worker actor (for dashboards and tests)."""
        workers = self.core.workers

        async def one(i: int) -> dict[str, Any]:
            try:
                pid = await asyncio.wait_for(workers.ping(i), timeout_s)
            except Exception as exc:
                return {"index": i, "alive": False, "error": type(exc).__name__}
            return {"index": i, "alive": True, "pid": pid}

        return list(await asyncio.gather(*(one(i) for i in range(len(workers)))))

    @ray.method(concurrency_group=CONTROL_GROUP)
    def ping(self) -> str:
        return "pong"

    async def shutdown(self) -> None:
        """Close the workers' backends (kills CLI processes); the caller then kills actors."""
        await self.core.aclose()
