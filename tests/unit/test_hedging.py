"""Hedged calls (issue 27): the worker's Hedger and the judge's HedgeBudget.

The races run against :class:`~ray_judge.backends.fake.FakeBackend` (the package's own
fake transport) with per-call delays, and in :mod:`tests.unit.test_hedging_pool` through
the real LiteLLM transport over sockets to the fake provider.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from ray_judge.backends.fake import FakeBackend
from ray_judge.config import JudgeConfig
from ray_judge.errors import RateLimitedError
from ray_judge.judging.catalog import JudgeCatalog
from ray_judge.judging.hedging import MIN_SAMPLES, Hedger, HedgeReport, LatencyWindow
from ray_judge.judging.runner import JudgeRunner
from ray_judge.pool.hedge_budget import HedgeBudget
from ray_judge.pool.limits import BackendLimits
from ray_judge.spec import BackendSpec
from ray_judge.verdict import JudgeRequest, Status, Verdict

SPEC = "litellm:fake/model"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def budget(config: JudgeConfig, *, limit: int = 10, queued: int = 0,
           clock: Clock | None = None) -> HedgeBudget:
    limits = BackendLimits(lambda spec: limit, lambda spec: 0.0, lambda spec: 0.0)
    return HedgeBudget(config, limits, lambda: queued, **({"clock": clock} if clock else {}))


# -- LatencyWindow ------------------------------------------------------------------------

def test_latency_window_percentiles_by_nearest_rank() -> None:
    window = LatencyWindow(size=100, every=1)
    for value in range(1, 101):
        window.add(value / 100)
    assert window.percentile(0.5) == pytest.approx(0.5, abs=0.011)
    assert window.percentile(0.9) == pytest.approx(0.9, abs=0.011)
    assert window.percentile(1.0) == 1.0
    window.add(5.0)  # the oldest (0.01) leaves, the newest counts
    assert len(window) == 100
    assert window.percentile(1.0) == 5.0


def test_an_empty_window_has_no_percentile() -> None:
    with pytest.raises(ValueError, match="no latencies recorded yet"):
        LatencyWindow().percentile(0.5)


# -- Hedger.delay ---------------------------------------------------------------------------

class Permits:
    """Always yes, recording what it was told (the judge's side is tested below)."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.reports: list[HedgeReport] = []

    async def acquire(self, spec: str) -> bool:
        self.asked.append(spec)
        return self.answer

    def release(self, report: HedgeReport) -> None:
        self.reports.append(report)


def warmed(hedger: Hedger, seconds: float = 0.2, n: int = MIN_SAMPLES) -> Hedger:
    for _ in range(n):
        hedger.window("default", SPEC).add(seconds)
    return hedger


def test_no_hedge_while_off_or_without_permits_or_too_few_latencies() -> None:
    assert not Hedger(JudgeConfig(hedge=False), Permits()).enabled
    assert not Hedger(JudgeConfig(), None).enabled
    hedger = Hedger(JudgeConfig(), Permits())
    assert hedger.enabled
    warmed(hedger, n=MIN_SAMPLES - 1)
    assert hedger.delay("default", SPEC, 120.0) is None
    hedger.window("default", SPEC).add(0.2)
    assert hedger.delay("default", SPEC, 120.0) == pytest.approx(0.5)  # the floor


def test_adaptive_delay_is_a_multiple_of_the_90th_percentile() -> None:
    hedger = warmed(Hedger(JudgeConfig(hedge_min_delay_s=0.1), Permits()), 2.0)
    assert hedger.delay("default", SPEC, 120.0) == pytest.approx(3.0)
    assert hedger.delay("other-judge", SPEC, 120.0) is None  # each judge has its own


def test_a_fixed_delay_needs_no_history() -> None:
    hedger = Hedger(JudgeConfig(hedge_after_s=2.0), Permits())
    assert hedger.delay("default", SPEC, 120.0) == 2.0
    assert hedger.delay("default", SPEC, 1.5) is None  # the attempt's timeout comes first


def test_a_deadline_near_attempt_is_hedged_earlier() -> None:
    hedger = warmed(Hedger(JudgeConfig(hedge_min_delay_s=0.1), Permits()), 2.0)
    # 3 s is the usual delay; with 4 s left, a 2 s call must start by 4 - 1.5 x 2 = 1 s.
    assert hedger.delay("default", SPEC, 4.0) == pytest.approx(1.0)


def test_rate_limited_backends_are_not_hedged_for_a_while() -> None:
    clock = Clock()
    hedger = Hedger(JudgeConfig(hedge_after_s=1.0), Permits(), clock=clock)
    hedger.throttle(SPEC, RateLimitedError("429", backend=SPEC, retry_after=12.0))
    assert hedger.delay("default", SPEC, 120.0) is None
    clock.now += 12.5
    assert hedger.delay("default", SPEC, 120.0) == 1.0


# -- Hedger.call through JudgeRunner ----------------------------------------------------------

def slow_then_fast(delays: list[float], answer: str = "Fine.\nSCORE: 7") -> FakeBackend:
    """A fake transport whose n-th call sleeps delays[n] (0.01 after the list)."""
    seq = itertools.chain(delays, itertools.repeat(0.01))
    calls = {"started": 0, "cancelled": 0, "finished": 0}

    async def handler(prompt):
        calls["started"] += 1
        try:
            await asyncio.sleep(next(seq))
        except asyncio.CancelledError:
            calls["cancelled"] += 1
            raise
        calls["finished"] += 1
        return answer

    config = JudgeConfig(hedge_after_s=0.05, max_attempts=1)
    backend = FakeBackend(BackendSpec.parse(SPEC), config, handler=handler)
    backend.counts = calls  # type: ignore[attr-defined]
    return backend


def test_a_late_call_is_hedged_and_the_hedge_wins() -> None:
    async def scenario():
        backend = slow_then_fast([30.0])
        permits = Permits()
        runner = JudgeRunner(backend, JudgeCatalog.build(backend.config),
                             hedger=Hedger(backend.config, permits))
        verdict = await runner.judge(JudgeRequest("2+2?", "4"))
        await asyncio.sleep(0.05)  # the loser's cancellation runs
        return verdict, backend.counts, permits

    verdict, counts, permits = asyncio.run(scenario())
    assert verdict.ok and verdict.score == pytest.approx(0.7)
    assert verdict.extra["hedged"] == {"sent": 1, "won": 1, "after_s": 0.05,
                                       "winner": "hedge"}
    assert verdict.attempts == 2  # both calls count
    assert counts == {"started": 2, "cancelled": 1, "finished": 1}
    assert permits.asked == [SPEC]
    assert permits.reports == [HedgeReport(SPEC, "hedge", loser_spec=SPEC, cancelled=True)]


def test_a_call_on_time_is_not_hedged() -> None:
    async def scenario():
        backend = slow_then_fast([0.0])
        permits = Permits()
        runner = JudgeRunner(backend, JudgeCatalog.build(backend.config),
                             hedger=Hedger(backend.config, permits))
        return await runner.judge(JudgeRequest("2+2?", "4")), permits

    verdict, permits = asyncio.run(scenario())
    assert verdict.ok and "hedged" not in verdict.extra and verdict.attempts == 1
    assert permits.asked == []


def test_the_first_call_wins_when_it_answers_before_its_hedge() -> None:
    async def scenario():
        backend = slow_then_fast([0.1, 30.0])  # late, but the hedge is later still
        permits = Permits()
        runner = JudgeRunner(backend, JudgeCatalog.build(backend.config),
                             hedger=Hedger(backend.config, permits))
        verdict = await runner.judge(JudgeRequest("2+2?", "4"))
        await asyncio.sleep(0.05)
        return verdict, backend.counts, permits

    verdict, counts, permits = asyncio.run(scenario())
    assert verdict.ok and verdict.extra["hedged"]["winner"] == "first"
    assert verdict.extra["hedged"]["won"] == 0
    assert counts["cancelled"] == 1
    assert permits.reports[0].winner == "first"


def test_no_permit_no_hedge() -> None:
    async def scenario():
        backend = slow_then_fast([0.2])
        permits = Permits(answer=False)
        runner = JudgeRunner(backend, JudgeCatalog.build(backend.config),
                             hedger=Hedger(backend.config, permits))
        return await runner.judge(JudgeRequest("2+2?", "4")), backend.counts, permits

    verdict, counts, permits = asyncio.run(scenario())
    assert verdict.ok and "hedged" not in verdict.extra
    assert counts["started"] == 1 and permits.asked == [SPEC] and permits.reports == []


@pytest.mark.parametrize(("first", "hedge", "winner"), [
    ((0.2, False), (0.02, True), "first"),  # the hedge fails first: the first call wins
    ((0.15, True), (0.2, False), "hedge"),  # the first fails first: the hedge wins
])
def test_a_failed_call_does_not_end_the_race(first, hedge, winner) -> None:
    async def scenario():
        seq = iter([first, hedge])

        async def handler(prompt):
            delay, fail = next(seq, (0.01, False))
            await asyncio.sleep(delay)
            if fail:
                raise RateLimitedError("429 from the provider", backend=SPEC)
            return "Fine.\nSCORE: 3"

        config = JudgeConfig(hedge_after_s=0.1, max_attempts=1)
        backend = FakeBackend(BackendSpec.parse(SPEC), config, handler=handler)
        runner = JudgeRunner(backend, JudgeCatalog.build(config),
                             hedger=Hedger(config, Permits()))
        return await runner.judge(JudgeRequest("2+2?", "4"))

    verdict = asyncio.run(scenario())
    assert verdict.ok and verdict.extra["hedged"]["winner"] == winner


def test_both_calls_failing_is_a_failure_never_a_score() -> None:
    async def scenario():
        async def handler(prompt):
            await asyncio.sleep(0.1)
            raise RateLimitedError("429 from the provider", backend=SPEC)

        config = JudgeConfig(hedge_after_s=0.02, max_attempts=1)
        backend = FakeBackend(BackendSpec.parse(SPEC), config, handler=handler)
        permits = Permits()
        runner = JudgeRunner(backend, JudgeCatalog.build(config),
                             hedger=Hedger(config, permits))
        return await runner.judge(JudgeRequest("2+2?", "4")), permits

    verdict, permits = asyncio.run(scenario())
    assert verdict.status is Status.RATE_LIMITED and verdict.score is None
    assert verdict.attempts == 2
    assert permits.reports[0].winner == "none"


def test_cancelling_the_request_cancels_both_calls() -> None:
    async def scenario():
        backend = slow_then_fast([30.0, 30.0])
        runner = JudgeRunner(backend, JudgeCatalog.build(backend.config),
                             hedger=Hedger(backend.config, Permits()))
        task = asyncio.ensure_future(runner.judge(JudgeRequest("2+2?", "4")))
        await asyncio.sleep(0.15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)
        return backend.counts

    counts = asyncio.run(scenario())
    assert counts == {"started": 2, "cancelled": 2, "finished": 0}


# -- HedgeBudget: the judge's permits ----------------------------------------------------------

def run(coro):
    return asyncio.run(coro)


def test_the_share_cap_counts_requests_dispatched_in_the_last_minute() -> None:
    clock = Clock()
    hedges = budget(JudgeConfig(hedge_share=0.05), clock=clock)
    assert not run(hedges.acquire(SPEC)) and hedges.refused["share"] == 1
    hedges.dispatched(100)
    granted = [run(hedges.acquire(SPEC)) for _ in range(8)]
    assert granted == [True] * 5 + [False] * 3
    for _ in range(5):
        hedges.release(HedgeReport(SPEC, "hedge", loser_spec=SPEC, cancelled=True))
    clock.now += 61  # the window moved on: nothing dispatched lately, no hedges
    assert not run(hedges.acquire(SPEC))
    hedges.dispatched(40)
    assert run(hedges.acquire(SPEC)) and run(hedges.acquire(SPEC))
    assert not run(hedges.acquire(SPEC))
    snap = hedges.snapshot()
    assert snap["sent"] == 5 and snap["won"] == 5 and snap["cancelled"] == 5
    assert snap["window_requests"] == 40 and snap["window_hedges"] == 2


def test_a_hedge_holds_an_in_flight_slot_until_released() -> None:
    hedges = budget(JudgeConfig(hedge_share=1.0), limit=3)
    hedges.dispatched(100)
    slots, _, _ = hedges.limits.of(BackendSpec.parse(SPEC))
    slots.try_take(2)  # two calls in flight
    assert run(hedges.acquire(SPEC))
    assert slots.in_use == 3
    assert not run(hedges.acquire(SPEC)) and hedges.refused["in_flight"] == 1
    hedges.release(HedgeReport(SPEC, "first", loser_spec=SPEC, cancelled=True))
    assert slots.in_use == 2


def test_no_hedges_while_requests_wait_in_the_queue() -> None:
    hedges = budget(JudgeConfig(hedge_share=1.0), queued=5)
    hedges.dispatched(100)
    assert not run(hedges.acquire(SPEC)) and hedges.refused["queued"] == 1


def test_no_hedges_to_a_backend_that_answered_rate_limited() -> None:
    clock = Clock()
    hedges = budget(JudgeConfig(hedge_share=1.0), clock=clock)
    hedges.dispatched(100)
    hedges.observe(Verdict.failure(Status.RATE_LIMITED, "429", backend=SPEC, retry_after=5.0))
    assert not run(hedges.acquire(SPEC)) and hedges.refused["rate_limited"] == 1
    assert run(hedges.acquire("litellm:other/model"))  # another backend is not throttled
    clock.now += 6
    assert run(hedges.acquire(SPEC))


def test_off_means_no_permits() -> None:
    hedges = budget(JudgeConfig(hedge=False, hedge_share=1.0))
    hedges.dispatched(100)
    assert not run(hedges.acquire(SPEC)) and hedges.refused["off"] == 1


def test_a_losing_call_that_finished_is_counted_and_charged() -> None:
    charged = []
    config = JudgeConfig(hedge_share=1.0)
    limits = BackendLimits(lambda spec: 10, lambda spec: 0.0, lambda spec: 1000.0)
    hedges = HedgeBudget(config, limits, lambda: 0, charge=lambda s, usd: charged.append((s, usd)))
    hedges.dispatched(10)
    assert run(hedges.acquire(SPEC))
    hedges.release(HedgeReport(SPEC, "hedge", loser_spec=SPEC, loser_tokens=1200,
                               loser_cost_usd=0.003))
    snap = hedges.snapshot()
    assert snap["loser_tokens"] == 1200 and snap["loser_cost_usd"] == pytest.approx(0.003)
    assert charged == [(SPEC, 0.003)]
    _, _, tokens = limits.of(BackendSpec.parse(SPEC))
    assert tokens.wait_s() > 0  # 1,200 tokens against 1,000 a minute: the budget is spent


def test_an_unsent_hedge_gives_its_permit_back_uncounted() -> None:
    hedges = budget(JudgeConfig(hedge_share=0.05))
    hedges.dispatched(20)
    assert run(hedges.acquire(SPEC))
    hedges.release(HedgeReport(SPEC, "unsent"))
    assert hedges.snapshot()["sent"] == 0
    assert run(hedges.acquire(SPEC))  # the share it held is free again


def test_config_paths_are_untouched(tmp_path: Path) -> None:
    # HedgeBudget reads only hedge settings: a config with a backend file works as is
    assert budget(JudgeConfig(backend_file=tmp_path / "x")).snapshot()["sent"] == 0


def test_a_call_that_started_before_latencies_were_known_is_hedged_once_they_are() -> None:
    """A run's first step: every call starts with an empty window; the slow one is
    hedged as soon as the fast ones that started with it have answered."""
    async def scenario():
        slow = {"left": 1}

        async def handler(prompt):
            if "SLOW" in prompt.user and slow["left"]:
                slow["left"] -= 1
                await asyncio.sleep(30)
            await asyncio.sleep(0.01)
            return "Fine.\nSCORE: 6"

        config = JudgeConfig(hedge_min_delay_s=0.2, max_attempts=1)
        backend = FakeBackend(BackendSpec.parse(SPEC), config, handler=handler)
        runner = JudgeRunner(backend, JudgeCatalog.build(config),
                             hedger=Hedger(config, Permits()))
        return await asyncio.gather(runner.judge(JudgeRequest("q", "SLOW")),
                                    *(runner.judge(JudgeRequest("q", str(i)))
                                      for i in range(MIN_SAMPLES + 5)))

    slow, *fast = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert slow.ok and slow.extra["hedged"]["winner"] == "hedge"
    assert all(v.ok and "hedged" not in v.extra for v in fast)


def test_a_group_call_is_hedged_like_any_call() -> None:
    from ray_judge.verdict import GroupRequest

    async def scenario():
        backend = slow_then_fast([30.0], answer='Graded.\n{"scores": [7, 3, 9]}')
        runner = JudgeRunner(backend, JudgeCatalog.build(backend.config),
                             hedger=Hedger(backend.config, Permits()))
        group = GroupRequest("Solve it.", ("one", "two", "three"), judge="group")
        return await runner.judge_group(group), backend.counts

    verdicts, counts = asyncio.run(scenario())
    # the group is shown shuffled: the answer's scores land on the responses shown
    assert sorted(v.score for v in verdicts) == pytest.approx([0.3, 0.7, 0.9])
    assert counts["started"] == 2 and counts["cancelled"] == 1
    assert [v.extra["hedged"]["winner"] for v in verdicts] == ["hedge"] * 3
    assert sum(v.attempts for v in verdicts if v.counts_call) == 2
