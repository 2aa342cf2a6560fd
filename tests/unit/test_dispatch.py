"""The singleton's scheduler without Ray: limits, order, switching, lost workers."""

from __future__ import annotations

import asyncio

import pytest

from ray_judge.pool.dispatch import Dispatcher, Slots, WorkerLost
from ray_judge.spec import BackendSpec
from ray_judge.verdict import JudgeRequest, Status, Verdict

A = BackendSpec.parse("litellm:openai/a")
B = BackendSpec.parse("litellm:openai/b")


def _requests(n: int) -> list[JudgeRequest]:
    return [JudgeRequest(f"p{i}", f"r{i}", metadata=i) for i in range(n)]


class Workers:
    """Fake workers that record concurrency per backend and the calls they got."""

    def __init__(self, latency: float = 0.01) -> None:
        self.latency = latency
        self.calls: list[tuple[int, str, int]] = []
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.fail_next: list[Exception] = []

    async def send(self, worker: int, spec: str, requests: list[JudgeRequest]) -> list[Verdict]:
        self.calls.append((worker, spec, len(requests)))
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.active[spec] = self.active.get(spec, 0) + len(requests)
        self.peak[spec] = max(self.peak.get(spec, 0), self.active[spec])
        await asyncio.sleep(self.latency)
        self.active[spec] -= len(requests)
        return [Verdict(score=0.5, status=Status.OK, backend=spec, metadata=r.metadata)
                for r in requests]


def _dispatcher(workers: Workers, *, spec=lambda: A, limit=8, n_workers=2,
                **kw) -> Dispatcher:
    return Dispatcher(num_workers=n_workers, send=workers.send, route=spec,
                      limit_for=lambda s: limit, **kw)


def test_batch_keeps_order_and_costs_one_call_per_worker() -> None:
    async def main() -> None:
        workers = Workers()
        d = _dispatcher(workers, limit=256)
        verdicts = await asyncio.gather(*d.submit(_requests(256)))
        assert [v.metadata for v in verdicts] == list(range(256))
        assert sorted(w for w, _, _ in workers.calls) == [0, 1]
        assert sum(n for _, _, n in workers.calls) == 256

    asyncio.run(main())


def test_global_limit_holds_across_workers_and_excess_waits() -> None:
    async def main() -> None:
        workers = Workers(latency=0.005)
        d = _dispatcher(workers, limit=5, n_workers=4)
        verdicts = await asyncio.gather(*d.submit(_requests(200)))
        assert len(verdicts) == 200 and all(v.ok for v in verdicts)
        assert workers.peak[str(A)] == 5  # reached, never exceeded
        assert d.in_flight() == {str(A): 0} and d.queued == 0

    asyncio.run(main())


def test_concurrent_single_calls_coalesce() -> None:
    async def main() -> None:
        workers = Workers()
        d = _dispatcher(workers, limit=1000)
        futures = [d.submit([r])[0] for r in _requests(100)]
        await asyncio.gather(*futures)
        assert len(workers.calls) <= 4  # 100 calls became a handful of micro-batches

    asyncio.run(main())


def test_a_stream_of_single_calls_shares_worker_calls() -> None:
    # score calls reach the judge one by one (Ray delivers each as its own task); sent
    # as they came, each would cost a worker call of its own.
    async def main() -> None:
        workers = Workers(latency=0.05)
        d = _dispatcher(workers, limit=256)
        futures = []
        for r in _requests(200):
            futures.append(d.submit([r])[0])
            await asyncio.sleep(0.001)
        assert all(v.ok for v in await asyncio.gather(*futures))
        assert len(workers.calls) <= 60, len(workers.calls)  # not 200

    asyncio.run(main())


def test_a_lone_request_after_a_quiet_spell_goes_at_once() -> None:
    async def main() -> None:
        workers = Workers(latency=0.0)
        d = _dispatcher(workers, limit=8)
        await asyncio.gather(*d.submit(_requests(1)))
        await asyncio.sleep(0.05)  # quiet for longer than the coalescing window
        start = asyncio.get_running_loop().time()
        await asyncio.gather(*d.submit(_requests(1)))
        assert asyncio.get_running_loop().time() - start < 0.015

    asyncio.run(main())


def test_switch_sends_queued_requests_to_the_new_backend() -> None:
    async def main() -> None:
        current = [A]
        workers = Workers(latency=0.02)
        d = _dispatcher(workers, spec=lambda: current[0], limit=2)
        first = d.submit(_requests(2))  # fill A's two slots
        await asyncio.sleep(0.005)
        rest = d.submit(_requests(6))  # queued behind them
        current[0] = B
        done = await asyncio.gather(*first, *rest)
        assert [v.backend for v in done[:2]] == [str(A)] * 2  # in flight: finish on A
        assert {v.backend for v in done[2:]} == {str(B)}  # not started: go to B

    asyncio.run(main())


def test_lost_worker_requeues_then_gives_up_with_a_failure_not_a_number() -> None:
    async def main() -> None:
        workers = Workers()
        workers.fail_next = [WorkerLost("killed")]
        d = _dispatcher(workers, n_workers=1)
        (v,) = await asyncio.gather(*d.submit(_requests(1)))
        assert v.ok  # served again after the loss

        workers.fail_next = [WorkerLost("killed")] * 10
        d2 = _dispatcher(workers, n_workers=1, max_lost=3)
        (v2,) = await asyncio.gather(*d2.submit(_requests(1)))
        assert v2.status is Status.BACKEND_ERROR and v2.score is None
        assert "died 4 times" in (v2.error or "")

    asyncio.run(main())


def test_a_restarting_worker_gets_nothing_until_it_answers_ping() -> None:
    # A killed Ray actor fails every call at once while it restarts. The items it lost
    # must wait for it (or go to another worker), not spend max_lost on one restart.
    async def main() -> None:
        workers = Workers()
        pings = []

        async def ping(worker: int) -> int:
            pings.append(worker)
            if len(pings) < 4:
                raise WorkerLost("restarting")
            workers.fail_next = []
            return worker

        workers.fail_next = [WorkerLost("killed")] * 10  # every send fails until it is back
        d = _dispatcher(workers, n_workers=1, max_lost=3, ping=ping)
        verdicts = await asyncio.wait_for(asyncio.gather(*d.submit(_requests(3))), 30)
        assert all(v.ok for v in verdicts), verdicts
        assert len(pings) == 4
        assert len(workers.calls) == 2  # the lost call, then one once the ping answered

        # With two workers the other one serves meanwhile.
        workers2 = Workers()
        workers2.fail_next = [WorkerLost("killed")]
        never = asyncio.Event()
        d2 = _dispatcher(workers2, n_workers=2, ping=lambda w: never.wait())
        verdicts = await asyncio.wait_for(asyncio.gather(*d2.submit(_requests(40))), 30)
        assert all(v.ok for v in verdicts)
        lost_worker = workers2.calls[0][0]
        assert all(w != lost_worker for w, _, _ in workers2.calls[1:])

    asyncio.run(main())


def test_a_failing_send_fails_every_waiting_future() -> None:
    async def main() -> None:
        workers = Workers()
        workers.fail_next = [RuntimeError("boom")]
        d = _dispatcher(workers, n_workers=1)
        verdicts = await asyncio.wait_for(asyncio.gather(*d.submit(_requests(3))), 5)
        assert {v.status for v in verdicts} == {Status.BACKEND_ERROR}
        assert all(v.score is None and "boom" in (v.error or "") for v in verdicts)
        # and the dispatcher still works afterwards
        (ok,) = await asyncio.gather(*d.submit(_requests(1)))
        assert ok.ok

    asyncio.run(main())


def test_on_verdict_error_does_not_cost_the_caller_its_verdict() -> None:
    async def main() -> None:
        def explode(v: Verdict) -> None:
            raise RuntimeError("metrics down")

        d = _dispatcher(Workers(), on_verdict=explode)
        (v,) = await asyncio.gather(*d.submit(_requests(1)))
        assert v.ok

    asyncio.run(main())


def test_slots_take_several_and_time_out() -> None:
    async def main() -> None:
        slots = Slots(3)
        assert await slots.take(5, 0.01) == 3
        assert await slots.take(1, 0.01) == 0
        slots.give_back(2)
        assert await slots.take(5, 0.01) == 2

    asyncio.run(main())


def test_rejects_zero_workers() -> None:
    with pytest.raises(ValueError, match="num_workers must be an integer >= 1, got 0"):
        Dispatcher(num_workers=0, send=Workers().send, route=lambda: A,
                   limit_for=lambda s: 1)


# -- cache, dedupe, failover re-serve, rate limits ------------------------------------

from ray_judge.pool.cache import VerdictCache, cache_key  # noqa: E402
from ray_judge.pool.failover import FailoverChain  # noqa: E402
from ray_judge.pool.limits import RateLimiter, TokenBudget  # noqa: E402


def _cached_dispatcher(workers: Workers, cache: VerdictCache, **kw) -> Dispatcher:
    return _dispatcher(workers, cache=cache,
                       key_for=lambda spec, r: cache_key(str(spec), "m", "rubric", r), **kw)


def test_identical_requests_share_one_call_and_hit_the_cache_later() -> None:
    async def main() -> None:
        workers = Workers()
        cache = VerdictCache(100)
        d = _cached_dispatcher(workers, cache, limit=64)
        same = [JudgeRequest("p", "same answer", metadata=i) for i in range(16)]
        verdicts = await asyncio.gather(*d.submit(same))
        assert sum(n for _, _, n in workers.calls) == 1  # one backend call for 16
        assert [v.metadata for v in verdicts] == list(range(16))  # each its own metadata
        assert sum(v.cached for v in verdicts) == 15 and all(v.ok for v in verdicts)
        (again,) = await asyncio.gather(*d.submit([JudgeRequest("p", "same answer")]))
        assert again.cached and again.score == verdicts[0].score
        assert sum(n for _, _, n in workers.calls) == 1
        assert cache.snapshot()["hits"] == 1 and cache.deduplicated == 15

    asyncio.run(main())


def test_failures_are_never_cached() -> None:
    async def main() -> None:
        class Failing(Workers):
            async def send(self, worker, spec, requests):
                self.calls.append((worker, spec, len(requests)))
                return [Verdict.failure(Status.TIMEOUT, "slow", backend=spec) for _ in requests]

        workers = Failing()
        d = _cached_dispatcher(workers, VerdictCache(100))
        for _ in range(3):
            (v,) = await asyncio.gather(*d.submit([JudgeRequest("p", "r")]))
            assert v.status is Status.TIMEOUT and not v.cached
        assert len(workers.calls) == 3

    asyncio.run(main())


def test_a_failure_shared_by_identical_requests_counts_its_call_once() -> None:
    """16 identical requests in flight ride one call that fails after 3 attempts with a
    paid answer that did not read: each gets the failure (not a cache hit), and the
    pool's totals count that call's retries, tokens and cost once."""
    from ray_judge.pool.stats import JudgeStats

    async def main() -> None:
        class Failing(Workers):
            async def send(self, worker, spec, requests):
                self.calls.append((worker, spec, len(requests)))
                return [Verdict.failure(Status.PARSE_ERROR, "no score", backend=spec,
                                        attempts=3, input_tokens=100, output_tokens=10,
                                        cost_usd=0.5, metadata=r.metadata) for r in requests]

        workers, stats = Failing(), JudgeStats()
        d = _cached_dispatcher(workers, VerdictCache(100), on_verdict=stats.record)
        same = [JudgeRequest("p", "same answer", metadata=i) for i in range(16)]
        verdicts = await asyncio.gather(*d.submit(same))
        assert len(workers.calls) == 1
        assert [v.metadata for v in verdicts] == list(range(16))
        assert all(v.status is Status.PARSE_ERROR and not v.cached for v in verdicts)
        assert all(v.attempts == 3 and v.cost_usd == 0.5 for v in verdicts)  # as it was
        assert [v.spent_elsewhere for v in verdicts].count(False) == 1
        assert sum(v.counts_call for v in verdicts) == 1
        snap = stats.snapshot()
        assert snap["total"] == 16 and snap["counts"][str(A)] == {"parse_error": 16}
        assert (snap["retries"], snap["input_tokens"], snap["cost_usd"]) == (2, 100, 0.5)
        assert snap["cached"] == 0

    asyncio.run(main())


def test_usage_limited_request_is_served_again_by_the_fallback() -> None:
    async def main() -> None:
        chain = FailoverChain([B], probe_interval_s=3600)

        class Limited(Workers):
            async def send(self, worker, spec, requests):
                self.calls.append((worker, spec, len(requests)))
                if spec == str(A):
                    return [Verdict.failure(Status.USAGE_LIMITED, "5-hour limit", backend=spec,
                                            metadata=r.metadata) for r in requests]
                return [Verdict(score=0.7, status=Status.OK, backend=spec, metadata=r.metadata)
                        for r in requests]

        def learn(v: Verdict) -> bool:
            chain.report(v)
            return not v.ok and chain.can_reroute(v, A)

        workers = Limited()
        d = _dispatcher(workers, spec=lambda: chain.route(A), reroute=learn)
        verdicts = await asyncio.gather(*d.submit(_requests(5)))
        assert all(v.ok and v.backend == str(B) for v in verdicts)
        assert [v.metadata for v in verdicts] == list(range(5))
        assert chain.failovers == 1
        (later,) = await asyncio.gather(*d.submit(_requests(1)))
        assert later.backend == str(B)  # the circuit stays open: no flip-flop back to A

    asyncio.run(main())


def test_usage_limited_without_a_fallback_reaches_the_caller_as_a_failure() -> None:
    async def main() -> None:
        chain = FailoverChain([])

        class Limited(Workers):
            async def send(self, worker, spec, requests):
                return [Verdict.failure(Status.USAGE_LIMITED, "limit", backend=spec)
                        for _ in requests]

        def learn(v: Verdict) -> bool:
            chain.report(v)
            return not v.ok and chain.can_reroute(v, A)

        d = _dispatcher(Limited(), spec=lambda: chain.route(A), reroute=learn)
        (v,) = await asyncio.wait_for(asyncio.gather(*d.submit(_requests(1))), 5)
        assert v.status is Status.USAGE_LIMITED and v.score is None

    asyncio.run(main())


def test_rate_limiter_burst_then_steady_rate() -> None:
    now = [0.0]
    rate = RateLimiter(60, clock=lambda: now[0])

    async def main() -> None:
        assert await rate.take(100, 0.01) == 60  # the burst
        assert await rate.take(1, 0.0) == 0  # empty; would need ~1 s
        now[0] += 5.0
        assert await rate.take(100, 0.01) == 5  # 1 per second refilled

    asyncio.run(main())
    assert RateLimiter(0).available() > 10**6  # 0 = no limit


def test_token_budget_blocks_until_refilled() -> None:
    now = [0.0]
    budget = TokenBudget(600, clock=lambda: now[0])
    assert budget.wait_s() == 0.0
    budget.debit(1200)  # a big verdict overdraws it
    assert budget.wait_s() == pytest.approx(60.1, abs=0.2)
    now[0] += 61
    assert budget.wait_s() == 0.0


def test_dispatch_respects_requests_per_minute() -> None:
    async def main() -> None:
        workers = Workers(latency=0.0)
        d = _dispatcher(workers, limit=100, rpm_for=lambda s: 6)
        futures = d.submit(_requests(8))
        done, pending = await asyncio.wait(futures, timeout=0.5)
        assert len(done) == 6 and len(pending) == 2  # the burst, then ~10 s per request
        for f in pending:
            f.cancel()

    asyncio.run(main())
