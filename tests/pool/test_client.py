"""JudgeClient on a real Ray cluster against a real judge (FakeBackend through the registry).

Ray calls are counted by wrapping the actor handle the client uses (the wrapper forwards
every call to the real handle); everything else is the real pool.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import JudgeNotRunningError, Status, Verdict  # noqa: E402

pytestmark = pytest.mark.ray
FAKE = {"litellm": "ray_judge.backends.fake:FakeBackend",
        "ccode": "ray_judge.backends.fake:FakeBackend"}
#: Every verdict takes this long, so requests are in flight when the judge is killed.
SLOW = "litellm:fake/slow@0.2"
WAIT_S = 120.0  # bound on every wait; reached only when something is broken


def judge_env(root, spec: str = SLOW) -> dict[str, str]:
    return {"LLM_JUDGE_NAME": spec, "LLM_JUDGE_BACKEND_FILE": str(root / ".judge_backend"),
            "LLM_JUDGE_NUM_WORKERS": "2", "LITELLM_OFFLINE_MODE": "true"}


@pytest.fixture(scope="module")
def judge(cluster, tmp_path_factory):
    handle = ray_judge.start_judge(env=judge_env(tmp_path_factory.mktemp("judge")),
                                   backend_registry=FAKE)
    yield handle
    ray_judge.stop_judge()


class CountingHandle:
    """Forwards to the real actor handle; records the size of each score_batch call."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.calls: list[int] = []

    @property
    def score_batch(self):
        counter = self

        class Method:
            @staticmethod
            def remote(items):
                counter.calls.append(len(items))
                return counter.handle.score_batch.remote(items)

        return Method

    def __getattr__(self, name):
        return getattr(self.handle, name)


def counted(client: ray_judge.JudgeClient, judge) -> CountingHandle:
    handle = CountingHandle(judge)
    client._started()._handle = handle
    return handle


def item(i: int, **extra) -> dict:
    return {"prompt": "What is 2+2?", "response": f"answer {i}", "reference": "4",
            "metadata": i, **extra}


def test_concurrent_sync_singles_from_threads_share_a_few_calls(judge) -> None:
    client = ray_judge.JudgeClient(linger_s=0.05)
    handle = counted(client, judge)
    n = 64
    out: list[Verdict | None] = [None] * n
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        barrier.wait()
        out[i] = client.score("What is 2+2?", f"thread {i}", "4", metadata=i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert all(isinstance(v, Verdict) and v.ok for v in out), out
    assert [v.metadata for v in out] == list(range(n))
    assert sum(handle.calls) == n
    assert len(handle.calls) <= n // 8, handle.calls  # one call per flush, not per request
    assert client.status()["client"]["calls"] == len(handle.calls)


def test_async_singles_and_batches_keep_their_order(judge) -> None:
    client = ray_judge.JudgeClient()
    handle = counted(client, judge)

    async def main():
        singles = [client.score_async("What is 2+2?", f"async {i}", "4", metadata=i)
                   for i in range(300)]
        batch = client.score_batch_async([item(1000 + i) for i in range(50)])
        return await asyncio.gather(*singles, batch)

    *singles, batch = asyncio.run(main())
    assert [v.metadata for v in singles] == list(range(300))
    assert [v.metadata for v in batch] == list(range(1000, 1050))
    assert all(v.ok for v in [*singles, *batch])
    assert sum(handle.calls) == 350
    assert len(handle.calls) <= 10, handle.calls


def test_sync_batch_is_split_at_max_batch_and_comes_back_in_order(judge) -> None:
    client = ray_judge.JudgeClient(max_batch=100)
    handle = counted(client, judge)
    verdicts = client.score_batch([item(i) for i in range(250)])
    assert [v.metadata for v in verdicts] == list(range(250))
    assert handle.calls == [100, 100, 50]
    assert client.score_batch([]) == []


def test_two_event_loops_and_a_thread_use_one_client(judge) -> None:
    client = ray_judge.JudgeClient()
    results: dict[str, list] = {}

    def in_loop(tag: str) -> None:
        async def main():
            return await asyncio.gather(*(client.score_async("q", f"{tag} {i}", metadata=i)
                                          for i in range(20)))
        results[tag] = asyncio.run(main())

    threads = [threading.Thread(target=in_loop, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    results["sync"] = [client.score("q", f"sync {i}", metadata=i) for i in range(3)]
    for t in threads:
        t.join(WAIT_S)
    assert [v.metadata for v in results["a"]] == list(range(20))
    assert [v.metadata for v in results["b"]] == list(range(20))
    assert [v.metadata for v in results["sync"]] == [0, 1, 2]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda c: c.score(123, "r"), TypeError, "request.prompt must be a string"),
        (lambda c: c.score("p", None), TypeError, "request.response must be a string"),
        (lambda c: c.score_batch("not a list"), TypeError, "list of dicts"),
        (lambda c: c.score_batch([item(0), {"prompt": "p"}]), ValueError,
         "request[1] is missing the field 'response'"),
        (lambda c: c.score_batch([item(0), 7]), TypeError, "request[1] must be a dict"),
        # Keys the client does not know go to the judge untouched; the judge decides.
        (lambda c: c.score("p", "r", bogus=1), ValueError, "unknown field(s) ['bogus']"),
        (lambda c: c.score_batch([item(0), item(1, bogus=2)]), ValueError,
         "request[1] has unknown field(s) ['bogus']"),
    ],
)
def test_bad_input_raises_the_judges_error(judge, call, error, words) -> None:
    client = ray_judge.JudgeClient()
    with pytest.raises(error) as info:
        call(client)
    assert words in str(info.value)


def test_a_bad_item_fails_only_its_own_caller(judge) -> None:
    # The bad ones carry a key only the judge checks, so the judge refuses the coalesced
    # batch they are in, and the client has to find out whose item it was.
    client = ray_judge.JudgeClient(linger_s=0.1)
    handle = counted(client, judge)

    async def main():
        calls = [client.score_async("q", f"good {i}", metadata=i) for i in range(30)]
        calls.insert(7, client.score_async("q", "bad", bogus=True))
        calls.insert(20, client.score_batch_async([item(100), item(101, bogus=1)]))
        calls.append(client.score_batch_async([item(200), item(201)]))
        return await asyncio.gather(*calls, return_exceptions=True)

    out = asyncio.run(main())
    bad_single, bad_batch = out.pop(7), out.pop(19)
    assert isinstance(bad_single, ValueError)
    assert "request has unknown field(s) ['bogus']" in str(bad_single)
    assert isinstance(bad_batch, ValueError)
    assert "request[1] has unknown field(s) ['bogus']" in str(bad_batch)
    *singles, good_batch = out
    assert [v.metadata for v in singles] == list(range(30))
    assert [v.metadata for v in good_batch] == [200, 201]
    assert all(v.ok for v in [*singles, *good_batch])
    assert client.status()["client"]["splits"] >= 2
    assert handle.calls[0] == 35  # first one coalesced call, then the halves


def test_pickled_into_a_ray_task(judge) -> None:
    client = ray_judge.JudgeClient(linger_s=0.01)
    assert repr(pickle.loads(pickle.dumps(client))) == repr(client)

    @ray.remote(num_cpus=0)
    def rollout(c, i):
        return c.score("What is 2+2?", f"task {i}", "4", metadata=i)

    verdicts = ray.get([rollout.remote(client, i) for i in range(4)], timeout=WAIT_S)
    assert [v.metadata for v in verdicts] == [0, 1, 2, 3]
    assert all(v.ok for v in verdicts)


def test_judge_restart_mid_batch_resubmits_every_request_once(judge) -> None:
    client = ray_judge.JudgeClient(deadline_s=WAIT_S)
    pid_before = client.status()["pid"]
    out: list = []

    def load() -> None:
        async def main():
            singles = [client.score_async("q", f"restart {i}", metadata=i)
                       for i in range(200)]
            batch = client.score_batch_async([item(1000 + i) for i in range(100)])
            return await asyncio.gather(*singles, batch)
        out.extend(asyncio.run(main()))

    thread = threading.Thread(target=load)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while sum(ray.get(judge.status.remote())["in_flight"].values()) == 0:
        assert time.monotonic() < deadline, "nothing reached the judge"
        time.sleep(0.02)
    ray.kill(judge, no_restart=False)
    thread.join(WAIT_S)
    assert not thread.is_alive()
    *singles, batch = out
    assert [v.metadata for v in singles] == list(range(200))
    assert [v.metadata for v in batch] == list(range(1000, 1100))
    assert all(v.ok for v in [*singles, *batch]), {v.status for v in [*singles, *batch]}
    status = client.status()
    assert status["pid"] != pid_before  # it really was restarted
    assert status["client"]["judge_lost"] >= 1
    assert status["client"]["resubmitted"] >= 1
    assert status["client"]["judge_down"] is None


def test_deadline_passes_while_the_judge_is_gone(cluster, tmp_path) -> None:
    name = "judge-doomed"
    doomed = ray_judge.start_judge(name=name, env=judge_env(tmp_path, "litellm:fake/slow@5"),
                                   backend_registry=FAKE)
    client = ray_judge.JudgeClient(name, deadline_s=4)
    results: list = []
    thread = threading.Thread(target=lambda: results.extend(
        [*client.score_batch([item(i) for i in range(10)]), client.score("q", "single")]))
    started = time.monotonic()
    thread.start()
    while sum(ray.get(doomed.status.remote())["in_flight"].values()) == 0:
        assert time.monotonic() - started < WAIT_S, "nothing reached the judge"
        time.sleep(0.02)
    ray.kill(doomed, no_restart=True)
    thread.join(WAIT_S)
    assert not thread.is_alive(), "the client hung after the deadline"
    assert len(results) == 11
    assert all(v.status is Status.TIMEOUT and v.score is None for v in results)
    assert [v.metadata for v in results[:10]] == list(range(10))
    assert "deadline of 4s" in results[0].error
    assert "unreachable" in results[0].error
    with pytest.raises(JudgeNotRunningError):
        client.status()


def test_no_judge_raises_judge_not_running(cluster) -> None:
    client = ray_judge.JudgeClient("nobody-here")
    with pytest.raises(JudgeNotRunningError, match="no judge actor 'nobody-here'"):
        client.score("q", "r")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"max_batch": 0}, "max_batch must be an integer >= 1, got 0"),
     ({"linger_s": -1}, "linger_s must be a number >= 0, got -1"),
     ({"deadline_s": 0}, "deadline_s must be a number >= 0.001, got 0")],
)
def test_settings_are_checked(kwargs, words) -> None:
    with pytest.raises(ValueError) as info:
        ray_judge.JudgeClient(**kwargs)
    assert words in str(info.value)
