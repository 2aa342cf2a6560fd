"""The failover chain's circuit breakers, with an injected clock."""

from __future__ import annotations

import logging

import pytest

from ray_judge.pool.failover import FailoverChain
from ray_judge.spec import BackendSpec
from ray_judge.verdict import Status, Verdict

PRIMARY = BackendSpec.parse("ccode-4-sonnet")
FALL1 = BackendSpec.parse("litellm:anthropic/claude-sonnet-4-5")
FALL2 = BackendSpec.parse("litellm:openai/gpt-4o")


def ok(spec: BackendSpec) -> Verdict:
    return Verdict(score=0.5, status=Status.OK, backend=str(spec))


def failed(spec: BackendSpec, status: Status, resets_at: float | None = None) -> Verdict:
    return Verdict.failure(status, f"{status.value} happened", backend=str(spec),
                           resets_at=resets_at)


@pytest.fixture
def clock():
    return [1_000.0]


@pytest.fixture
def chain(clock):
    return FailoverChain([FALL1, FALL2], probe_interval_s=60, max_probe_interval_s=600,
                         rate_limited_budget=3, clock=lambda: clock[0])


def test_primary_serves_while_healthy(chain) -> None:
    assert chain.route(PRIMARY) == (PRIMARY, None)
    chain.report(ok(PRIMARY))
    chain.report(failed(PRIMARY, Status.TIMEOUT))  # timeouts are retried, not a failover
    assert chain.route(PRIMARY) == (PRIMARY, None)
    assert chain.failovers == 0


def test_usage_limit_fails_over_until_reset_then_one_probe_brings_it_back(
        chain, clock, caplog) -> None:
    chain.route(PRIMARY)
    with caplog.at_level(logging.WARNING, logger="ray_judge.pool.failover"):
        chain.report(failed(PRIMARY, Status.USAGE_LIMITED, resets_at=clock[0] + 3600))
        assert chain.can_reroute(failed(PRIMARY, Status.USAGE_LIMITED), PRIMARY)
        assert chain.route(PRIMARY) == (FALL1, None)
        assert chain.route(PRIMARY) == (FALL1, None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # "unavailable until ..." and "failover: a -> b", once each
    assert chain.failovers == 1
    clock[0] += 1800
    assert chain.route(PRIMARY) == (FALL1, None)  # reset time not reached: no probe
    clock[0] += 1801
    assert chain.route(PRIMARY) == (PRIMARY, 1)  # exactly one probe
    assert chain.route(PRIMARY) == (FALL1, None)  # everyone else stays on the fallback
    chain.report(ok(PRIMARY))
    assert chain.route(PRIMARY) == (PRIMARY, None)
    assert chain.snapshot()["open"] == {}


def test_failed_probe_waits_longer_each_time(chain, clock) -> None:
    chain.report(failed(PRIMARY, Status.AUTH_ERROR))
    assert chain.route(PRIMARY)[0] == FALL1
    waits = []
    for _ in range(5):
        opened_until = chain.snapshot()["open"][str(PRIMARY)]["until"]
        waits.append(opened_until - clock[0])
        clock[0] = opened_until + 1
        assert chain.route(PRIMARY) == (PRIMARY, 1)
        chain.report(failed(PRIMARY, Status.AUTH_ERROR))
    assert waits == [60, 120, 240, 480, 600]  # doubling, capped at max_probe_interval_s


def test_sustained_rate_limits_fail_over_after_the_budget(chain) -> None:
    for _ in range(3):
        chain.report(failed(PRIMARY, Status.RATE_LIMITED))
        assert chain.route(PRIMARY) == (PRIMARY, None)
    assert not chain.can_reroute(failed(PRIMARY, Status.RATE_LIMITED), PRIMARY)
    chain.report(failed(PRIMARY, Status.RATE_LIMITED))
    assert chain.route(PRIMARY) == (FALL1, None)
    assert chain.can_reroute(failed(PRIMARY, Status.RATE_LIMITED), PRIMARY)


def test_an_ok_verdict_resets_the_rate_limited_run(chain) -> None:
    for _ in range(3):
        chain.report(failed(PRIMARY, Status.RATE_LIMITED))
    chain.report(ok(PRIMARY))
    for _ in range(3):
        chain.report(failed(PRIMARY, Status.RATE_LIMITED))
    assert chain.route(PRIMARY) == (PRIMARY, None)


def test_chain_walks_to_the_next_fallback(chain, clock) -> None:
    chain.report(failed(PRIMARY, Status.USAGE_LIMITED))
    chain.report(failed(FALL1, Status.AUTH_ERROR))
    assert chain.route(PRIMARY) == (FALL2, None)
    chain.report(failed(FALL2, Status.AUTH_ERROR))
    assert not chain.can_reroute(failed(FALL2, Status.AUTH_ERROR), PRIMARY)
    spec, _ = chain.route(PRIMARY)  # all down: wait on the one that reopens first
    assert spec == PRIMARY


def test_no_fallback_means_no_reroute(clock) -> None:
    chain = FailoverChain([], clock=lambda: clock[0])
    chain.report(failed(PRIMARY, Status.USAGE_LIMITED))
    assert not chain.can_reroute(failed(PRIMARY, Status.USAGE_LIMITED), PRIMARY)
    assert chain.route(PRIMARY)[0] == PRIMARY


def test_a_person_switching_the_primary_is_not_a_failover(chain) -> None:
    assert chain.route(PRIMARY)[0] == PRIMARY
    assert chain.route(FALL2)[0] == FALL2
    assert chain.failovers == 0


def test_stragglers_of_an_open_circuit_do_not_extend_it(chain, clock) -> None:
    chain.report(failed(PRIMARY, Status.USAGE_LIMITED, resets_at=clock[0] + 100))
    until = chain.snapshot()["open"][str(PRIMARY)]["until"]
    chain.report(failed(PRIMARY, Status.USAGE_LIMITED, resets_at=clock[0] + 5000))
    assert chain.snapshot()["open"][str(PRIMARY)]["until"] == until


def test_a_backend_unavailable_on_the_worker_fails_over(chain) -> None:
    missing = Verdict.failure(Status.BACKEND_ERROR, "claude not found", backend=str(PRIMARY),
                              extra={"unavailable": True})
    chain.report(missing)
    assert chain.can_reroute(missing, PRIMARY)
    assert chain.route(PRIMARY)[0] == FALL1


def test_a_backend_the_spend_budget_diverts_from_is_passed_over_without_a_circuit(clock):
    diverted = {str(PRIMARY), str(FALL1)}
    chain = FailoverChain([FALL1, FALL2], clock=lambda: clock[0],
                          diverts=lambda spec: spec in diverted)
    assert chain.route(PRIMARY) == (FALL2, None)
    refused = failed(PRIMARY, Status.BUDGET_EXHAUSTED)
    chain.report(refused)
    assert chain.snapshot()["open"] == {}  # not the backend's fault: no circuit opens
    assert chain.can_reroute(refused, PRIMARY)  # FALL2 is neither out nor diverted
    diverted.add(str(FALL2))
    assert not chain.can_reroute(refused, PRIMARY)  # nothing left: the caller sees it
    assert chain.route(PRIMARY) == (PRIMARY, None)  # and the guard refuses it there
    diverted.clear()  # the hour refilled
    assert chain.route(PRIMARY) == (PRIMARY, None)
    assert not FailoverChain([FALL2]).can_reroute(refused, PRIMARY)  # other policies: never
