"""A request's own ``backend=`` (and ``sample=``) through :class:`JudgeCore`, without Ray.

Real :class:`~ray_judge.pool.worker.JudgeWorker` objects in this process with the fake
backend behind every spec (as ``test_judge_core``); a backend's calls are held at a gate
(an asyncio.Event) where a test needs one busy, so nothing here depends on timing.
"""

from __future__ import annotations

import asyncio

import pytest

from ray_judge.errors import UsageLimitedError
from ray_judge.selection.override_file import write_override
from ray_judge.spec import BackendSpec

from .test_judge_core import make_core, run

SERVING = "litellm:fake/serving"
OTHER = "litellm:fake/other"


def _backend(core, spec: str):
    """The fake backend each worker uses for ``spec`` (created now, before any call)."""
    return [worker._runner(spec).backend for worker in core.workers.workers]


def _gate(core, spec: str) -> asyncio.Event:
    gate = asyncio.Event()

    async def held(prompt):
        await gate.wait()
        return "Held.\nSCORE: 5"

    for backend in _backend(core, spec):
        backend.handler = held
    return gate


def _serve(core, spec: str) -> None:
    write_override(core.config.backend_file, BackendSpec.parse(spec))
    core.refresh_backend()


def test_a_pinned_request_does_not_wait_behind_a_busy_serving_backend(tmp_path):
    async def scenario():
        core = make_core(tmp_path, max_in_flight_litellm=1)
        _serve(core, SERVING)
        gate = _gate(core, SERVING)
        queued = [asyncio.ensure_future(core.score("q", f"training {i}")) for i in range(5)]
        await asyncio.sleep(0.05)
        assert core.dispatcher.queued == 4  # one in flight at the limit, four waiting
        pinned = await asyncio.wait_for(core.score("q", "eval", backend=OTHER), 10)
        still_waiting = [f.done() for f in queued]
        gate.set()
        served = await asyncio.gather(*queued)
        await core.aclose()
        return pinned, still_waiting, served

    pinned, still_waiting, served = run(scenario)
    assert pinned.ok and pinned.backend == OTHER
    assert still_waiting == [False] * 5
    assert {v.backend for v in served} == {SERVING} and all(v.ok for v in served)


def test_a_request_pinned_to_the_serving_backend_shares_its_global_limit(tmp_path):
    async def scenario():
        core = make_core(tmp_path, max_in_flight_litellm=1)
        _serve(core, SERVING)
        gate = _gate(core, SERVING)
        training = asyncio.ensure_future(core.score("q", "training"))
        await asyncio.sleep(0.05)
        pinned = asyncio.ensure_future(core.score("q", "eval", backend=SERVING))
        await asyncio.sleep(0.05)
        in_flight = core.dispatcher.in_flight()
        waiting = (training.done(), pinned.done(), core.dispatcher.queued)
        gate.set()
        verdicts = await asyncio.gather(training, pinned)
        await core.aclose()
        return in_flight, waiting, verdicts

    in_flight, waiting, verdicts = run(scenario)
    assert in_flight == {SERVING: 1}  # the limit of 1 holds across both lanes
    assert waiting == (False, False, 1)
    assert [v.backend for v in verdicts] == [SERVING, SERVING]


def test_a_pinned_request_to_an_exhausted_backend_fails_and_is_never_rerouted(tmp_path):
    async def scenario():
        core = make_core(tmp_path, fallback=(BackendSpec.parse(OTHER),))
        _serve(core, SERVING)

        def out_of_quota(prompt):
            raise UsageLimitedError("quota reached for today", backend=SERVING)

        for backend in _backend(core, SERVING):
            backend.handler = out_of_quota
        pinned = await core.score("q", "eval", backend=SERVING)
        failover = core.failover.snapshot()
        training = await core.score("q", "training")  # not pinned: fails over
        await core.aclose()
        return pinned, failover, training

    pinned, failover, training = run(scenario)
    assert pinned.status == "usage_limited" and pinned.score is None
    assert pinned.backend == SERVING
    # The pinned failure taught the chain nothing: no circuit opened, no failover.
    assert failover["failovers"] == 0 and failover["open"] == {}
    assert training.ok and training.backend == OTHER


def test_batch_items_group_and_compare_take_their_own_backends(tmp_path):
    async def scenario():
        core = make_core(tmp_path)
        _serve(core, SERVING)
        batch = await core.score_batch([
            {"prompt": "q", "response": "a"},
            {"prompt": "q", "response": "b", "backend": OTHER},
            {"prompt": "q", "responses": ["c", "d"], "backend": OTHER},
        ])
        group = await core.score_group("q", ["e", "f"], backend=OTHER)
        pair = await core.compare("q", "g", "h", backend=OTHER)
        await core.aclose()
        return batch, group, pair

    batch, group, pair = run(scenario)
    assert [batch[0].backend, batch[1].backend] == [SERVING, OTHER]
    assert {v.backend for v in batch[2]} == {OTHER}
    assert {v.backend for v in group} == {OTHER}
    assert pair.ok and pair.backend == OTHER


def test_pinned_requests_share_the_cache_and_a_sample_is_judged_again(tmp_path):
    async def scenario():
        core = make_core(tmp_path)
        _serve(core, SERVING)
        backends = _backend(core, OTHER)
        first = await core.score("q", "same", backend=OTHER)
        again = await core.score("q", "same", backend=OTHER)
        sampled = await core.score("q", "same", backend=OTHER, sample=1)
        sampled_again = await core.score("q", "same", backend=OTHER, sample=1)
        calls = sum(b.calls for b in backends)
        await core.aclose()
        return first, again, sampled, sampled_again, calls

    first, again, sampled, sampled_again, calls = run(scenario)
    assert (first.cached, again.cached) == (False, True)
    assert (sampled.cached, sampled_again.cached) == (False, True)
    assert calls == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"backend": "gpt-4o"}, "request.backend: invalid judge backend 'gpt-4o'"),
    ({"backend": 3}, "request.backend: invalid judge backend: expected a string, got int"),
    ({"sample": -1}, "request.sample must be an integer in [0, 1000], got -1"),
    ({"sample": "2"}, "request.sample must be an integer >= 0, got str"),
])
def test_a_bad_backend_or_sample_is_refused_naming_it(tmp_path, kwargs, message):
    async def scenario():
        core = make_core(tmp_path)
        with pytest.raises((TypeError, ValueError)) as raised:
            await core.score("q", "r", **kwargs)
        with pytest.raises((TypeError, ValueError)) as in_batch:
            await core.score_batch([{"prompt": "q", "response": "r"},
                                    {"prompt": "q", "response": "r", **kwargs}])
        ok = await core.score("q", "r")  # and the core keeps serving
        await core.aclose()
        return str(raised.value), str(in_batch.value), ok

    single, batch, ok = run(scenario)
    assert single.startswith(message)
    assert batch.startswith(message.replace("request.", "request[1]."))
    assert ok.ok


def test_a_pinned_request_never_rides_on_an_identical_routed_one_that_fails_over(tmp_path):
    """Identical requests in flight share one call, but not across lanes: the routed one
    is rerouted to the fallback, the pinned one must answer for the backend it named."""

    async def scenario():
        core = make_core(tmp_path, fallback=(BackendSpec.parse(OTHER),))
        _serve(core, SERVING)
        gate = asyncio.Event()

        async def out_of_quota(prompt):
            await gate.wait()
            raise UsageLimitedError("quota reached for today", backend=SERVING)

        for backend in _backend(core, SERVING):
            backend.handler = out_of_quota
        routed = asyncio.ensure_future(core.score("q", "same"))
        await asyncio.sleep(0.05)
        pinned = asyncio.ensure_future(core.score("q", "same", backend=SERVING))
        await asyncio.sleep(0.05)
        deduplicated = core.cache.deduplicated
        gate.set()
        verdicts = await asyncio.gather(routed, pinned)
        await core.aclose()
        return deduplicated, verdicts

    deduplicated, (routed, pinned) = run(scenario)
    assert deduplicated == 0
    assert routed.ok and routed.backend == OTHER
    assert pinned.status == "usage_limited" and pinned.backend == SERVING


def test_the_client_checks_backend_and_sample_in_the_callers_process():
    """JudgeClient's own checks (no cluster needed): the caller whose item it is gets the
    judge's message before anything is sent."""
    from ray_judge.pool.client import JudgeClient

    with pytest.raises(ValueError, match=r"^request\.backend: invalid judge backend 'x'"):
        JudgeClient._single("p", "r", None, rubric=None, metadata=None, extra={"backend": "x"})
    with pytest.raises(ValueError, match=r"^request\[1\]\.sample must be an integer"):
        JudgeClient._batch([{"prompt": "p", "response": "r"},
                            {"prompt": "p", "response": "r", "sample": -2}])
    items, single = JudgeClient._single("p", "r", None, rubric=None, metadata=None,
                                        extra={"backend": OTHER})
    assert items == [{"prompt": "p", "response": "r", "backend": OTHER}] and single
