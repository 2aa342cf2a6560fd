"""The judge ``ray-judge eval`` asks: the running one, or one in this process.

With a cluster here (``RAY_ADDRESS``, or the one ``ray start``/``launch.sh`` left) and
a judge actor in it, the eval goes through that judge: its limits, cache and queue are
the ones a training run shares, and its requests wait in lanes of their own
(:mod:`ray_judge.pool.lanes`), so a training run beside it is not held up. Otherwise a
:class:`~ray_judge.pool.core.JudgeCore` is built in this process with the same
settings (environment, override file, judges file): the same dispatcher, limits, cache
and workers as the actor, without Ray, so an eval on a laptop starts in a second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import JudgeConfig
from ..judging.catalog import JudgeCatalog

__all__ = ["EvalJudge", "local_judge", "running_judge_or_none"]

logger = logging.getLogger(__name__)


class EvalJudge:
    """A judge for :func:`ray_judge.quality.run.judge_cases`, with where it runs and
    what it serves now."""

    def __init__(self, where: str, serving: str, versions: dict[str, str], *,
                 score_batch: Callable[..., Any], compare: Callable[..., Any],
                 close: Callable[[], Any] | None = None) -> None:
        self.where, self.serving, self.versions = where, serving, versions
        self.score_batch, self.compare = score_batch, compare
        self._close = close

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()


class _Quiet:
    """Metric instruments that record nothing: a judge in a CLI process exports none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _nothing(self, *args: Any, **kwargs: Any) -> None:
        pass

    inc = set = observe = _record = _nothing


class _QuietInstruments:
    Counter = Gauge = Histogram = _Quiet


def local_judge(config: JudgeConfig, catalog: JudgeCatalog) -> EvalJudge:
    """A JudgeCore in this process; call it from the event loop it will run on."""
    from ..judging.rubric import load_rubric
    from ..pool.core import JudgeCore
    from ..pool.metrics import JudgeMetrics
    from ..pool.worker import JudgeWorker, LocalWorkers

    # An eval measures; it does not re-judge for shift measurement.
    config = dataclasses.replace(config, shift_share=0.0, num_workers=1)
    workers = LocalWorkers([JudgeWorker(0, {}, str(Path.cwd()),
                                        judges=list(catalog))])
    core = JudgeCore(config, catalog, rubric=load_rubric(config), workers=workers,
                     metrics=JudgeMetrics(None, instruments=_QuietInstruments()))
    return EvalJudge("a judge in this process (no running judge found)",
                     str(core.resolver.resolve().spec), catalog.versions(),
                     score_batch=core.score_batch, compare=core.compare, close=core.aclose)


def running_judge_or_none(config: JudgeConfig, timeout_s: float) -> tuple[EvalJudge | None, str]:
    """The running judge as an :class:`EvalJudge`, or None and why there is none."""
    from ..pool.cluster import JudgeUnreachable, call, cluster_address, connect, find

    address = cluster_address()
    if address is None:
        return None, "no Ray cluster here"
    try:
        status = call(config, "status")
    except JudgeUnreachable as exc:
        return None, str(exc)
    ray = connect(address, namespace=config.namespace, quiet=True)
    handle = find(config.actor_name, config.namespace)
    versions = ray.get(handle.judges.remote(), timeout=30)

    async def score_batch(items: list[dict[str, Any]]) -> Any:
        return await asyncio.wait_for(_awaited(handle.score_batch.remote(items)), timeout_s)

    async def compare(**kwargs: Any) -> Any:
        return await asyncio.wait_for(_awaited(handle.compare.remote(**kwargs)), timeout_s)

    where = (f"the running judge {config.actor_name!r} (namespace {config.namespace!r}, "
             f"cluster {address})")
    return EvalJudge(where, status["serving"], versions, score_batch=score_batch,
                     compare=compare), ""


async def _awaited(ref: Any) -> Any:
    return await ref
