"""Start, find and stop the judge singleton: the public face of the Ray actors.

Example:
    >>> import ray, ray_judge
    >>> ray.init(address="auto")
    >>> judge = ray_judge.start_judge()
    >>> verdict = ray.get(judge.score.remote("What is 2+2?", "4", reference="4"))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..config import JudgeConfig, forwarded_env
from ..errors import JudgeNotRunningError
from ..judging.catalog import JudgeCatalog
from ..judging.definition import JudgeDefinition
from ..judging.rubric import load_rubric
from .cluster import connect, find

__all__ = ["get_judge", "start_judge", "stop_judge"]

logger = logging.getLogger(__name__)

#: Pending calls the singleton accepts at once; beyond it Ray queues them on the caller.
MAX_PENDING_CALLS = 100_000


def _ensure_ray() -> Any:
    # Joins the cluster launch.sh or `ray start` made; with none, starts one.
    return connect(start_local=True)


def _names(config: JudgeConfig, name: str | None, namespace: str | None) -> tuple[str, str]:
    return name or config.actor_name, namespace or config.namespace


def start_judge(*, name: str | None = None, namespace: str | None = None,
                env: Mapping[str, str] | None = None,
                backend_registry: Mapping[str, str] | None = None,
                judges: Iterable[JudgeDefinition] = (),
                timeout_s: float = 120.0) -> Any:
    """Get the running judge, or start it (detached, pinned to this node) and wait for it.

    Args:
        name: actor name (default ``LLM_JUDGE_ACTOR_NAME`` or ``judge``).
        namespace: Ray namespace (default ``LLM_JUDGE_NAMESPACE`` or ``ray_judge``).
        env: environment for the judge and its workers; by default the ``LLM_JUDGE_*``,
            ``CLAUDE_*``, provider and ``LITELLM_*`` variables of this process.
        backend_registry: replace backend classes by kind, e.g.
            ``{"ccode": "ray_judge.backends.fake:FakeBackend"}`` for a dry run.
        judges: judge definitions beside ``default`` and the judges file's
            (``LLM_JUDGE_JUDGES_FILE``); requests name them with ``judge=``.
        timeout_s: how long to wait for the judge to answer.

    Returns:
        The actor handle. If a judge already runs under that name it is returned as is
        (its settings and judges are the ones it was started with; a warning names the
        judges whose definitions differ from this caller's).
    """
    ray = _ensure_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .judge import Judge

    environ = dict(os.environ if env is None else env)
    config = JudgeConfig.from_env(environ)  # fail here, in the caller, on a bad setting
    judges = list(judges)
    # Likewise a bad rubric file, judges file or definition, rather than a dead actor later.
    wanted = JudgeCatalog.build(config, rubric=load_rubric(config), judges=judges).versions()
    name, namespace = _names(config, name, namespace)
    handle = Judge.options(
        name=name, namespace=namespace, lifetime="detached", get_if_exists=True,
        max_restarts=-1, max_task_retries=0, num_cpus=0, max_concurrency=MAX_PENDING_CALLS,
        # The override file lives on this node's file system: keep the judge beside it.
        scheduling_strategy=NodeAffinitySchedulingStrategy(
            node_id=ray.get_runtime_context().get_node_id(), soft=False),
    ).remote(forwarded_env(environ), str(Path.cwd()), dict(backend_registry or {}), judges)
    ray.get(handle.ping.remote(), timeout=timeout_s)
    running = ray.get(handle.judges.remote(), timeout=timeout_s)
    differ = sorted(n for n, v in wanted.items() if running.get(n) != v)
    if differ:
        # get_if_exists returned a judge started earlier, with other definitions.
        logger.warning("the running judge %r has other definitions of %s than this caller "
                       "(it keeps its own: restart it to change judges); it knows %s",
                       name, ", ".join(differ), running)
    return handle


def get_judge(*, name: str | None = None, namespace: str | None = None) -> Any:
    """The running judge's handle; :class:`JudgeNotRunningError` when there is none."""
    _ensure_ray()
    config = JudgeConfig.from_env()
    return find(*_names(config, name, namespace))


def stop_judge(*, name: str | None = None, namespace: str | None = None,
               timeout_s: float = 30.0) -> bool:
    """Stop the judge and its workers (CLI processes are killed). False if none ran."""
    ray = _ensure_ray()
    try:
        handle = get_judge(name=name, namespace=namespace)
    except JudgeNotRunningError:
        return False
    try:
        ray.get(handle.shutdown.remote(), timeout=timeout_s)
    except Exception as exc:  # stopping must work on a sick judge too
        logger.warning("judge did not shut down cleanly (%s); killing it", exc)
    ray.kill(handle, no_restart=True)
    return True
