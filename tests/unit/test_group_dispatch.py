"""Groups in the scheduler and the actor's group logic, without Ray: a group is one item
(one slot, one call, one cache entry), split groups come back aligned on their anchor,
and comparisons combine their two orders."""

from __future__ import annotations

import asyncio

import pytest

from ray_judge.judging.groups.planning import (
    GroupCounts,
    assemble,
    chunk_requests,
    compare_verdict,
    pair_requests,
)
from ray_judge.pool.cache import VerdictCache, cache_key
from ray_judge.pool.dispatch import Dispatcher
from ray_judge.spec import BackendSpec
from ray_judge.verdict import GroupRequest, JudgeRequest, Status, Verdict

A = BackendSpec.parse("litellm:openai/a")


def _score(text: str) -> float:
    return (sum(map(ord, text)) % 11) / 10


class Workers:
    """Answers each group member from its own text; counts calls and items."""

    def __init__(self) -> None:
        self.items = 0
        self.groups = 0

    async def send(self, worker: int, spec: str, requests: list) -> list:
        await asyncio.sleep(0.001)
        out: list = []
        for r in requests:
            self.items += 1
            if isinstance(r, GroupRequest):
                self.groups += 1
                out.append(tuple(Verdict(score=_score(x), status=Status.OK, backend=spec,
                                         metadata=r.metadata, input_tokens=3)
                                 for x in r.responses))
            else:
                out.append(Verdict(score=_score(r.response), status=Status.OK, backend=spec,
                                   metadata=r.metadata))
        return out


def _key(spec: BackendSpec, request) -> str:
    if isinstance(request, GroupRequest):
        return cache_key(str(spec), "m", "group", JudgeRequest(
            request.prompt, "\x00".join(request.responses), request.reference))
    return cache_key(str(spec), "m", "r", request)


def test_groups_and_singles_share_one_queue_and_groups_are_cached_whole() -> None:
    async def main() -> None:
        workers = Workers()
        cache = VerdictCache(1000)
        seen: list[Verdict] = []
        d = Dispatcher(num_workers=2, send=workers.send, route=lambda: A,
                       limit_for=lambda s: 16, cache=cache, key_for=_key,
                       on_verdict=seen.append)
        groups = [GroupRequest(f"p{i}", tuple(f"r{i}-{j}" for j in range(8)), metadata=i)
                  for i in range(64)]
        mixed = [*groups, JudgeRequest("p", "single")]
        results = await asyncio.gather(*d.submit(mixed))
        assert workers.items == 65 and workers.groups == 64
        for group, result in zip(groups, results[:64], strict=True):
            assert isinstance(result, tuple) and len(result) == 8
            assert [v.score for v in result] == [_score(r) for r in group.responses]
            assert all(v.metadata == group.metadata for v in result)
        assert isinstance(results[64], Verdict)
        assert len(seen) == 64 * 8 + 1  # metrics see every member
        again = await asyncio.gather(*d.submit([groups[0]]))
        assert workers.items == 65 and all(v.cached for v in again[0])

    asyncio.run(main())


def test_a_failing_worker_fails_every_member_of_a_group() -> None:
    async def broken(worker, spec, requests):
        raise RuntimeError("boom")

    async def main() -> None:
        d = Dispatcher(num_workers=1, send=broken, route=lambda: A, limit_for=lambda s: 4)
        (result,) = await asyncio.gather(*d.submit([GroupRequest("p", ("a", "b", "c"))]))
        assert len(result) == 3 and all(v.status is Status.BACKEND_ERROR for v in result)
        assert all(v.score is None for v in result)

    asyncio.run(main())


def test_a_group_answer_of_the_wrong_size_is_a_backend_error() -> None:
    async def short(worker, spec, requests):
        return [(Verdict(score=0.5, status=Status.OK),) for _ in requests]

    async def main() -> None:
        d = Dispatcher(num_workers=1, send=short, route=lambda: A, limit_for=lambda s: 4)
        (result,) = await asyncio.gather(*d.submit([GroupRequest("p", ("a", "b"))]))
        assert [v.status for v in result] == [Status.BACKEND_ERROR] * 2

    asyncio.run(main())


def _ok(scores, **extra) -> tuple[Verdict, ...]:
    return tuple(Verdict(score=s, status=Status.OK, extra=dict(extra)) for s in scores)


def test_a_group_of_40_is_three_chunks_with_the_anchor_aligned() -> None:
    group = GroupRequest("p", tuple(f"r{i}" for i in range(40)))
    plan, chunks = chunk_requests(group, 16)
    assert [len(c.responses) for c in chunks] == [14, 14, 14]
    assert all(c.responses[0] == "r0" for c in chunks)
    # each chunk grades the anchor differently: 0.5, 0.3, 0.7 (mean 0.5)
    answers = [_ok([0.5] + [0.6] * 13), _ok([0.3] + [0.6] * 13), _ok([0.7] + [0.6] * 13)]
    counts = GroupCounts()
    verdicts = assemble(group, plan, answers, counts)
    assert verdicts[0].score == pytest.approx(0.5)
    by_chunk = {j: [verdicts[i].score for i in plan.chunks[j][1:]] for j in range(3)}
    assert by_chunk[0] == pytest.approx([0.6] * 13)
    assert by_chunk[1] == pytest.approx([0.8] * 13)   # its anchor was 0.2 low
    assert by_chunk[2] == pytest.approx([0.4] * 13)
    assert verdicts[5].extra["split"]["chunks"] == 3 and verdicts[5].extra["split"]["aligned"]
    assert counts.snapshot() == {"groups": 1, "members": 40, "calls": 3, "split": 1,
                                 "fallbacks": 0, "comparisons": 0, "inconsistent": 0,
                                 "calls_saved": 37}


def test_a_failed_chunk_keeps_its_failures_and_the_rest_stays_aligned() -> None:
    group = GroupRequest("p", tuple(f"r{i}" for i in range(5)))
    plan, _ = chunk_requests(group, 3)
    failed = tuple(Verdict.failure(Status.PARSE_ERROR, "bad") for _ in range(3))
    verdicts = assemble(group, plan, [_ok([0.4, 0.5, 0.6]), failed])
    assert [v.status for v in verdicts] == [Status.OK, Status.OK, Status.OK,
                                            Status.PARSE_ERROR, Status.PARSE_ERROR]
    assert verdicts[0].score == pytest.approx(0.4) and verdicts[3].score is None
    assert verdicts[3].extra["split"]["aligned"] is False


def test_compare_averages_both_orders_and_flags_a_position_bias() -> None:
    reqs = pair_requests(GroupRequest("p", ("a", "b")), swap=True)
    assert [r.responses for r in reqs] == [("a", "b"), ("b", "a")]
    counts = GroupCounts()
    fair = compare_verdict([_ok([0.9, 0.1]), _ok([0.2, 0.8])], swap=True, counts=counts)
    assert fair.score == pytest.approx(0.85) and fair.extra["position_consistent"] is True
    biased = compare_verdict([_ok([1.0, 0.0]), _ok([1.0, 0.0])], swap=True, counts=counts)
    assert biased.score == pytest.approx(0.5) and biased.extra["position_consistent"] is False
    assert counts.comparisons == 2 and counts.inconsistent == 1
    failed = compare_verdict([_ok([1.0, 0.0]), (Verdict.failure(Status.TIMEOUT, "slow"),) * 2],
                             swap=True)
    assert failed.status is Status.TIMEOUT and failed.score is None
    one = compare_verdict([_ok([0.3, 0.7])], swap=False, first_is_a=False)
    assert one.score == pytest.approx(0.7)  # a was shown second
