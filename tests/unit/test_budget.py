"""Spend budgets: each policy under load, through the judge's core without Ray.

:class:`~ray_judge.pool.core.JudgeCore` runs with real workers in this process and the
fake backend behind every spec (see ``test_judge_core.py``). The primary,
``litellm:fake/paid$0.01``, is a billed backend whose every call reports 0.01 USD; the
fallback ``ccode-4-sonnet`` is the CLI on a subscription login (no
``ANTHROPIC_API_KEY``), so it is not billed. The clock is injected: the hourly window
refills when a test moves it on, never by waiting an hour.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from ray_judge.integrations.reward import reward_of
from ray_judge.pool.budget import HOUR_S, Budget, billed
from ray_judge.pool.cache import VerdictCache
from ray_judge.settings import SpendLimits
from ray_judge.spec import BackendSpec
from ray_judge.verdict import Status, Verdict
from tests.unit.test_judge_core import Clock, make_core, run

PAID = "litellm:fake/paid$0.01"
FREE = "ccode-4-sonnet"
COST = 0.01
IN_FLIGHT = 8  # the paid backend's global in-flight limit: the overshoot's bound


@pytest.fixture(autouse=True)
def _subscription_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def paid_core(tmp_path: Path, clock: Clock, limits: SpendLimits, policy: str,
              **settings: Any):
    core = make_core(tmp_path, clock, default_spec=BackendSpec.parse(PAID),
                     max_in_flight_litellm=IN_FLIGHT, budget_usd=limits,
                     budget_policy=policy, **settings)
    core.budget.poll_s = 0.005
    return core


def items(n: int, start: int = 0) -> list[dict[str, str]]:
    # Every response its own: the verdict cache must not answer any of them.
    return [{"prompt": "Grade it.", "response": f"answer {i}"} for i in range(start, start + n)]


def spent_within_bound(spent: float, limit: float) -> bool:
    """Spend reached the limit and passed it by less than what can be in flight."""
    return limit - 1e-9 <= spent < limit + IN_FLIGHT * COST + 1e-9


@pytest.mark.parametrize("limits", [SpendLimits(run=0.25), SpendLimits(hourly=0.25)],
                         ids=["run", "hourly"])
def test_fail_stops_spend_at_the_limit_within_the_in_flight_bound(tmp_path, limits):
    clock = Clock()

    async def scenario():
        core = paid_core(tmp_path, clock, limits, "fail")
        verdicts = await core.score_batch(items(200))
        status = core.status()
        await core.aclose()
        return verdicts, status

    verdicts, status = run(scenario)
    ok = [v for v in verdicts if v.ok]
    refused = [v for v in verdicts if v.status is Status.BUDGET_EXHAUSTED]
    assert len(ok) + len(refused) == 200
    spent = status["budget"]["spent_usd"]
    assert spent == pytest.approx(len(ok) * COST)
    assert spent_within_bound(spent, 0.25), spent
    assert all(v.score is None and v.backend == PAID and "spend budget" in v.error
               for v in refused)
    # A run's limit does not refill; an hour's does, when its first spend is an hour old.
    expected_after = None if limits.run else HOUR_S
    assert {v.retry_after for v in refused} == {expected_after}
    assert status["budget"]["reached"] == ("run" if limits.run else "hour")
    assert status["budget"]["refused"] == len(refused)
    assert status["counts"][PAID]["budget_exhausted"] == len(refused)
    # The adapters keep their failure policy: never a number.
    assert {reward_of(v, None) for v in refused} == {None}


def test_fallback_serves_from_the_next_backend_and_returns_when_the_hour_refills(tmp_path):
    clock = Clock()

    async def scenario():
        core = paid_core(tmp_path, clock, SpendLimits(hourly=0.1), "fallback",
                         fallback=(BackendSpec.parse(FREE),))
        during = await core.score_batch(items(100))
        status = core.status()
        clock.now += HOUR_S
        after = await core.score_batch(items(5, start=100))
        later = core.status()
        await core.aclose()
        return during, status, after, later

    during, status, after, later = run(scenario)
    assert all(v.ok for v in during + after)  # nobody was refused: the CLI took over
    paid = [v for v in during if v.backend == PAID]
    assert len(paid) + sum(v.backend == FREE for v in during) == 100
    assert spent_within_bound(len(paid) * COST, 0.1), len(paid)
    assert status["budget"]["hour_spent_usd"] == pytest.approx(len(paid) * COST)
    assert (status["budget"]["reached"], status["budget"]["refill_in_s"]) == ("hour", HOUR_S)
    assert status["serving"] == FREE
    assert {v.backend for v in after} == {PAID}  # the window refilled: back to the primary
    assert later["serving"] == PAID and later["budget"]["reached"] is None
    assert [s["why"] for s in later["recent_switches"]] == ["failover", "back to primary"]


def test_fallback_with_nothing_unbilled_to_fall_back_to_fails(tmp_path):
    clock = Clock()

    async def scenario():
        core = paid_core(tmp_path, clock, SpendLimits(run=0.05), "fallback",
                         fallback=(BackendSpec.parse("litellm:fake/other$0.01"),))
        verdicts = await core.score_batch(items(40))
        status = core.status()
        await core.aclose()
        return verdicts, status

    verdicts, status = run(scenario)
    assert spent_within_bound(status["budget"]["spent_usd"], 0.05)
    assert {v.status for v in verdicts} == {Status.OK, Status.BUDGET_EXHAUSTED}


def test_wait_holds_requests_and_releases_them_when_the_hour_refills(tmp_path):
    clock = Clock()

    async def scenario():
        core = paid_core(tmp_path, clock, SpendLimits(hourly=0.1), "wait")
        batch = asyncio.ensure_future(core.score_batch(items(30)))
        refills, held = 0, []
        while not batch.done():
            await asyncio.sleep(0.01)
            if core.budget.held:
                held.append(core.budget.held)
                # Spend stopped at the limit while requests wait.
                assert spent_within_bound(core.budget.hour_spent(), 0.1)
                assert not batch.done()
                clock.now += HOUR_S
                refills += 1
        status = core.status()
        await core.aclose()
        return batch.result(), refills, held, status

    verdicts, refills, held, status = run(scenario)
    assert all(v.ok and v.backend == PAID for v in verdicts)
    assert refills >= 1 and max(held) <= IN_FLIGHT
    assert status["budget"]["spent_usd"] == pytest.approx(30 * COST)
    assert status["budget"]["held"] == 0


def test_wait_gives_timeout_when_the_deadline_comes_before_the_refill(tmp_path):
    clock = Clock()

    async def scenario():
        core = paid_core(tmp_path, clock, SpendLimits(hourly=0.05), "wait", deadline_s=30.0)
        batch = asyncio.ensure_future(core.score_batch(items(20)))
        while not batch.done():  # each held micro-batch waits its own deadline
            await asyncio.sleep(0.005)
            if core.budget.held:
                clock.now += 31.0  # past the deadline, long before the hour refills
        assert clock.now - 1_000.0 < HOUR_S
        verdicts = batch.result()
        await core.aclose()
        return verdicts

    verdicts = run(scenario)
    timed_out = [v for v in verdicts if v.status is Status.TIMEOUT]
    assert timed_out and all(v.score is None and "waited 30s" in v.error for v in timed_out)
    assert sum(v.ok for v in verdicts) * COST < 0.05 + IN_FLIGHT * COST


def test_spend_survives_a_restart_with_a_cache_file(tmp_path):
    clock = Clock()
    cache = tmp_path / "cache.db"

    async def first():
        core = paid_core(tmp_path, clock, SpendLimits(hourly=0.1, run=1.0), "fail",
                         cache_path=cache)
        await core.score_batch(items(5))
        await core.aclose()

    async def second():
        core = paid_core(tmp_path, clock, SpendLimits(hourly=0.1, run=1.0), "fail",
                         cache_path=cache)
        status = core.status()
        verdicts = await core.score_batch(items(20, start=5))
        await core.aclose()
        return status, verdicts

    run(first)
    clock.now += 60.0
    status, verdicts = run(second)
    assert status["budget"]["spent_usd"] == pytest.approx(5 * COST)
    assert status["budget"]["hour_spent_usd"] == pytest.approx(5 * COST)
    assert status["budget"]["persistent"] is True
    # The restarted judge stops at the hour's limit counting what it spent before.
    assert sum(v.ok for v in verdicts) < 20
    refused = [v for v in verdicts if v.status is Status.BUDGET_EXHAUSTED]
    assert refused and {v.retry_after for v in refused} == {HOUR_S - 60.0}


def test_the_hour_refills_as_its_oldest_spend_leaves_the_window():
    clock = Clock()
    budget = Budget(SpendLimits(hourly=0.8), "fail", billed=lambda spec: True, clock=clock)
    paid = Verdict(score=1.0, status="ok", cost_usd=0.5)
    budget.charge(PAID, [paid])
    clock.now += 100.0
    budget.charge(PAID, [paid])
    assert budget.reached() == "hour"
    assert budget.refill_at() == 1_000.0 + HOUR_S  # once the first 0.5 has left
    assert budget.retry_after() == HOUR_S - 100.0
    clock.now = 1_000.0 + HOUR_S
    assert budget.reached() is None and budget.hour_spent() == pytest.approx(0.5)
    assert budget.total == pytest.approx(1.0)


def test_only_billed_backends_count_and_a_cache_hit_costs_nothing():
    budget = Budget(SpendLimits(run=1.0), billed=lambda spec: spec.startswith("litellm:"))
    verdict = Verdict(score=1.0, status="ok", cost_usd=0.3)
    budget.charge(FREE, [verdict])  # a subscription's notional cost
    budget.charge(PAID, [verdict.with_(cached=True, cost_usd=0.0), (verdict, verdict)])
    assert budget.total == pytest.approx(0.6)


@pytest.mark.parametrize(("spec", "environ", "expected"), [
    (PAID, {}, True),
    ("litellm:hosted_vllm/qwen", {"ANTHROPIC_API_KEY": "sk-ant-x"}, False),
    (FREE, {}, False),
    (FREE, {"ANTHROPIC_API_KEY": "sk-ant-x"}, True),
    (FREE, {"ANTHROPIC_API_KEY": ""}, False),
])
def test_what_is_billed(spec, environ, expected):
    assert billed(spec, environ) is expected


def test_a_warning_at_80_percent_once_per_window(caplog):
    clock = Clock()
    budget = Budget(SpendLimits(hourly=1.0, run=10.0), billed=lambda spec: True, clock=clock)
    step = [Verdict(score=1.0, status="ok", cost_usd=0.3)]
    with caplog.at_level(logging.WARNING, logger="ray_judge.pool.budget"):
        for _ in range(3):
            budget.charge(PAID, step)  # 0.9 of the hour: one warning
        clock.now += HOUR_S
        for _ in range(3):
            budget.charge(PAID, step)  # a new hour: warned again
    warnings = [r.getMessage() for r in caplog.records if "hourly limit of 1 USD spent" in
                r.getMessage()]
    assert len(warnings) == 2 and "(90%)" in warnings[0]


def test_the_spend_file_adds_what_one_second_spent(tmp_path):
    cache = VerdictCache(10, tmp_path / "c.db")
    cache.add_spend(5.2, 0.25)
    cache.add_spend(5.9, 0.5)
    cache.add_spend(7.0, 1.0)
    cache.close()
    assert VerdictCache(10, tmp_path / "c.db").spend() == [(5.0, 0.75), (7.0, 1.0)]


def test_ten_calls_of_a_cent_reach_a_limit_of_a_dime():
    # 0.01 summed ten times is 0.09999999999999999 in floats: still the limit.
    budget = Budget(SpendLimits(run=0.1, hourly=0.1), billed=lambda spec: True, clock=Clock())
    for _ in range(10):
        budget.charge(PAID, [Verdict(score=1.0, status="ok", cost_usd=0.01)])
    assert budget.total < 0.1 and budget.reached() == "run" and budget.blocks(PAID)
