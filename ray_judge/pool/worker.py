"""The worker actor: runs backend calls (CLI subprocesses, LiteLLM requests) for the judge.

Workers hold no scheduling state: the singleton decides what runs where and how much.
A worker keeps one backend object per spec it has served (a CLI scratch directory, an
imported litellm), judged through a :class:`~ray_judge.judging.runner.JudgeRunner`, and
grades each micro-batch concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from ..backends import Backend, create_backend
from ..config import JudgeConfig
from ..errors import JudgeError
from ..judging.catalog import JudgeCatalog
from ..judging.definition import JudgeDefinition
from ..judging.hedging import HedgePermits, Hedger
from ..judging.runner import JudgeRunner
from ..spec import BackendSpec
from ..verdict import GroupRequest, JudgeRequest, Status
from . import collector
from .cache import Result
from .dispatch import Request
from .failure import failure

__all__ = ["JudgeWorker", "LocalWorkers", "Workers"]

logger = logging.getLogger(__name__)


class JudgeWorker:
    """Body of a worker actor (``ray.remote`` is applied by the judge that starts it)."""

    def __init__(self, index: int, env: Mapping[str, str], cwd: str,
                 registry: Mapping[str, str] | None = None,
                 judges: Sequence[JudgeDefinition] = (), *,
                 permits: HedgePermits | None = None) -> None:
        # Ray starts actors with the raylet's environment, not the driver's: the judge
        # hands over what the person who started it had set.
        os.environ.update(env)
        self.index = index
        self.config = JudgeConfig.from_env(os.environ, cwd=Path(cwd))
        self.registry = dict(registry or {})
        # The judge's definitions, defaults filled in (render and parse happen here); a
        # worker started alone reads the configured judges file.
        self.judges = (JudgeCatalog(judges) if judges else JudgeCatalog.build(self.config))
        self._runners: dict[str, JudgeRunner] = {}
        self._prepared: dict[str, asyncio.Task[None]] = {}
        self._broken: dict[str, str] = {}
        # Hedges are the judge's to allow (its limits, its share cap): ``permits`` asks it.
        hedge_to = self.config.hedge_to
        self.hedger = Hedger(self.config, permits, hedge_backend=None if hedge_to is None
                             else lambda: self._ready(str(hedge_to)))
        collector.tune(self.config.gc_threshold)

    def __repr__(self) -> str:
        return f"JudgeWorker({self.index})"

    def _runner(self, spec_text: str) -> JudgeRunner:
        runner = self._runners.get(spec_text)
        if runner is None:
            backend = create_backend(BackendSpec.parse(spec_text), self.config,
                                     registry=self.registry)
            runner = self._runners[spec_text] = JudgeRunner(backend, self.judges,
                                                            hedger=self.hedger)
        return runner

    async def _ready(self, spec_text: str) -> Backend:
        """The backend of ``spec_text``, prepared once (shared by the batches that arrive
        meanwhile); raises what preparing it raised."""
        runner = self._runner(spec_text)
        if spec_text not in self._prepared:
            self._prepared[spec_text] = asyncio.ensure_future(self._prepare(runner.backend))
        try:
            await asyncio.shield(self._prepared[spec_text])
        except (JudgeError, ImportError, OSError):
            self._runners.pop(spec_text, None)
            self._prepared.pop(spec_text, None)
            raise
        return runner.backend

    async def judge_batch(self, spec_text: str,
                          requests: list[JudgeRequest | GroupRequest]) -> list[Result]:
        """Grade ``requests`` with backend ``spec_text``; one Verdict per request (a tuple
        of them per group), in order."""
        try:
            await self._ready(spec_text)
            runner = self._runners[spec_text]
        except (JudgeError, ImportError, OSError) as exc:
            # e.g. CLAUDE_CLI_PATH missing on this node: every item says so, clearly.
            message = f"backend {spec_text} unavailable on worker {self.index}: {exc}"
            if self._broken.get(spec_text) != message:
                logger.error("%s", message)
                self._broken[spec_text] = message
            # "unavailable" lets the failover chain move on, as for bad credentials.
            return [failure(r, Status.BACKEND_ERROR, message, backend=spec_text,
                            extra={"unavailable": True})
                    for r in requests]
        return list(await asyncio.gather(*(
            runner.judge_group(r) if isinstance(r, GroupRequest) else runner.judge(r)
            for r in requests)))

    async def _prepare(self, backend: Backend) -> None:
        await backend.prepare()
        # The first backend of a kind has imported its library (litellm: ~400,000
        # objects) and planned its routes: nothing the collector need ever walk again.
        collector.freeze(self.config.gc_threshold, backend.kind)

    async def ping(self) -> int:
        return os.getpid()

    async def aclose(self) -> None:
        runners, self._runners = self._runners, {}
        for runner in runners.values():
            try:
                await runner.backend.aclose()
            except Exception:
                logger.exception("closing %r failed", runner.backend)


class Workers(Protocol):
    """The worker pool the core sends micro-batches to."""

    def __len__(self) -> int: ...

    async def send(self, worker: int, spec: str, requests: list[Request]) -> list[Result]:
        """Judge ``requests`` on worker ``worker``; raise :class:`~.dispatch.WorkerLost`
        when the worker is gone."""

    def ping(self, worker: int) -> Awaitable[object]: ...

    def use_permits(self, permits: HedgePermits) -> None:
        """Where the workers ask for hedge permits (actors ask the judge actor instead)."""

    async def aclose(self) -> None:
        """Close every worker's backends (kills CLI processes)."""


class LocalWorkers:
    """:class:`JudgeWorker` objects in this process, in place of actors: the worker pool
    a :class:`~ray_judge.pool.core.JudgeCore` uses when there is no cluster (tests, a
    judge inside one process). Same calls as the actor pool; a worker is never lost."""

    def __init__(self, workers: Sequence[JudgeWorker]) -> None:
        self.workers = list(workers)

    def __len__(self) -> int:
        return len(self.workers)

    async def send(self, worker: int, spec: str,
                   requests: list[JudgeRequest | GroupRequest]) -> list[Result]:
        return await self.workers[worker].judge_batch(spec, requests)

    def ping(self, worker: int) -> Awaitable[int]:
        return self.workers[worker].ping()

    def use_permits(self, permits: HedgePermits) -> None:
        """Hedges of these workers ask ``permits`` (the core's) first."""
        for worker in self.workers:
            worker.hedger.permits = permits

    async def aclose(self) -> None:
        for worker in self.workers:
            await worker.aclose()
