"""The judge's logic without Ray: routing, switch history, planning and status.

:class:`~ray_judge.pool.core.JudgeCore` runs here with real
:class:`~ray_judge.pool.worker.JudgeWorker` objects in this process
(:class:`~ray_judge.pool.worker.LocalWorkers`), the fake backend behind every spec, and an
injected clock. Only Ray's metric instruments are replaced (they need a connected Ray
worker): :class:`Instruments` records what the judge would export.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ray_judge.backends.fake import content_score
from ray_judge.config import JudgeConfig
from ray_judge.judging.catalog import JudgeCatalog
from ray_judge.judging.definition import JudgeDefinition
from ray_judge.judging.rubric import load_rubric
from ray_judge.pool.core import JudgeCore
from ray_judge.pool.metrics import JudgeMetrics
from ray_judge.pool.status import JudgeStatus
from ray_judge.pool.worker import JudgeWorker, LocalWorkers
from ray_judge.selection.override_file import write_override
from ray_judge.spec import BackendSpec

FAKE = {kind: "ray_judge.backends.fake:FakeBackend" for kind in ("ccode", "litellm")}


class Instrument:
    def __init__(self, name: str, description: str = "", **_: Any) -> None:
        self.name, self.points = name, []

    def inc(self, value: float = 1.0, tags: dict | None = None) -> None:
        self.points.append((value, tags))

    _record = set = observe = inc


class Instruments:
    """Stands in for ``ray.util.metrics``: each instrument keeps what was recorded."""

    Counter = Gauge = Histogram = Instrument


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make_core(tmp_path: Path, clock: Clock | None = None, *,
              judges: tuple[JudgeDefinition, ...] = (), **settings: Any) -> JudgeCore:
    config = JudgeConfig(backend_file=tmp_path / ".judge_backend",
                         num_workers=2, shift_share=0.0, **settings)
    rubric = load_rubric(config)
    catalog = JudgeCatalog.build(config, rubric=rubric, judges=judges)
    workers = LocalWorkers([JudgeWorker(i, {}, str(tmp_path), FAKE, list(catalog))
                            for i in range(config.num_workers)])
    return JudgeCore(config, catalog, rubric=rubric, workers=workers,
                     metrics=JudgeMetrics(None, instruments=Instruments()),
                     node_id="node-1", clock=clock or Clock())


def core_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  env: dict[str, Any]) -> JudgeCore:
    """A core and its in-process workers configured as a judge is, from the environment
    (``env`` set on it; None unsets a name), with the real backends its specs name."""
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    config = JudgeConfig.from_env()
    rubric = load_rubric(config)
    catalog = JudgeCatalog.build(config, rubric=rubric)
    workers = LocalWorkers([JudgeWorker(i, {}, str(tmp_path), None, list(catalog))
                            for i in range(config.num_workers)])
    return JudgeCore(config, catalog, rubric=rubric, workers=workers,
                     metrics=JudgeMetrics(None, instruments=Instruments()))


def run(coro_fn):
    """Run ``coro_fn()`` on a fresh loop (the core's dispatcher lives on it)."""
    return asyncio.run(coro_fn())


def test_status_has_exactly_the_keys_of_its_type(tmp_path):
    async def scenario():
        core = make_core(tmp_path)
        await core.score("2+2?", "4")
        status = core.status()
        await core.aclose()
        return status

    status = run(scenario)
    assert set(status) == set(JudgeStatus.__required_keys__)
    assert (status["total"], status["node_id"], status["workers"]) == (1, "node-1", 2)
    assert status["backend"] == status["serving"] == "ccode-4-sonnet"
    assert status["source"] == "default" and status["switches"] == 0


def test_a_switch_is_routed_to_and_remembered_with_its_time(tmp_path):
    clock = Clock()

    async def scenario():
        core = make_core(tmp_path, clock)
        before = await core.score("2+2?", "4")
        clock.now = 1_060.0
        write_override(core.config.backend_file, BackendSpec.parse("litellm:fake/other"))
        assert core.refresh_backend()["backend"] == "litellm:fake/other"
        after = await core.score("2+2?", "four")
        status = core.status()
        switches = core.metrics.switches.points
        await core.aclose()
        return before, after, status, switches

    before, after, status, switches = run(scenario)
    assert (before.backend, after.backend) == ("ccode-4-sonnet", "litellm:fake/other")
    assert status["switches"] == 1 and status["source"] == "file"
    assert status["recent_switches"] == [{"at": 1_060.0, "from": "ccode-4-sonnet",
                                          "to": "litellm:fake/other", "why": "switch"}]
    assert [value for value, _ in switches] == [0, 1]  # exported at 0, then the switch


def test_a_group_larger_than_max_group_is_planned_in_chunks_and_answered_in_order(tmp_path):
    grouped = JudgeDefinition(name="small_groups", kind="group", max_group=4)
    responses = [f"answer {i}" for i in range(10)]

    async def scenario():
        core = make_core(tmp_path, judges=(grouped,))
        verdicts = await core.score_group("Which is right?", responses, judge="small_groups")
        status = core.status()
        await core.aclose()
        return verdicts, status

    verdicts, status = run(scenario)
    assert len(verdicts) == len(responses) and all(v.ok for v in verdicts)
    assert all(v.judge == "small_groups" for v in verdicts)
    assert status["groups"]["split"] == 1
    # nine members beside the anchor, three per chunk next to it: three judge calls
    assert {v.extra["split"]["chunks"] for v in verdicts} == {3}
    assert sorted(v.extra["split"]["chunk"] for v in verdicts[1:]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_a_comparison_is_asked_in_both_orders_and_combined(tmp_path):
    async def scenario():
        core = make_core(tmp_path)
        verdict = await core.compare("Which is right?", "first", "second")
        await core.aclose()
        return verdict

    verdict = run(scenario)
    a, b = content_score("first"), content_score("second")
    assert verdict.ok and verdict.score == pytest.approx(min(1.0, max(0.0, 0.5 + (a - b) / 20)))
    assert verdict.extra["position_consistent"] is True


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda c: c.score("p", "r", judge="nope"), ValueError, "nope"),
    (lambda c: c.score_batch("not a list"), TypeError, "list of dicts"),
    (lambda c: c.score_group("p", ["a", "b"], judge="default"), ValueError,
     "'default' is not a group judge"),
    (lambda c: c.compare("p", "a", "b", judge="group"), ValueError, "not a pairwise judge"),
])
def test_bad_input_is_refused_with_the_bad_value_and_the_core_keeps_serving(
        tmp_path, call, error, words):
    async def scenario():
        core = make_core(tmp_path)
        with pytest.raises(error, match=words):
            await call(core)
        verdict = await core.score("2+2?", "4")
        await core.aclose()
        return verdict

    assert run(scenario).ok
