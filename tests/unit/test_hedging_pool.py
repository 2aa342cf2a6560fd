"""Hedged calls through the judge's core and the real LiteLLM transport (issue 27).

:class:`~ray_judge.pool.core.JudgeCore` with in-process workers
(:class:`~ray_judge.pool.worker.LocalWorkers`) sends real HTTP requests to the fake
provider on 127.0.0.1, which makes chosen requests slow and counts the calls whose client
closed the connection (a cancelled loser). No Ray: only the metric instruments are
stand-ins (they need a connected Ray worker).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from ray_judge.pool.core import JudgeCore
from ray_judge.testing import Behaviour

from .test_judge_core import core_from_env

pytestmark = pytest.mark.usefixtures("provider_env")

SPEC = "litellm:openai/gpt-4o-mini"


def make_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: Any) -> JudgeCore:
    """A core and its workers, configured as a judge is: from the environment."""
    env = {"LLM_JUDGE_MAX_ATTEMPTS": 1, "LLM_JUDGE_BACKOFF": 0, "LLM_JUDGE_NUM_WORKERS": 2,
           "LLM_JUDGE_SHIFT_SHARE": 1, "LLM_JUDGE_RESERVOIR_SIZE": 0, "LLM_JUDGE_NAME": SPEC,
           "LLM_JUDGE_BACKEND_FILE": tmp_path / ".judge_backend", **env}
    return core_from_env(tmp_path, monkeypatch, env)


def eventually(predicate, timeout_s: float = 10.0) -> bool:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_the_hedge_wins_and_the_slow_call_is_closed(tmp_path, server, monkeypatch) -> None:
    server.slow("SLOW-ONE", 30.0)  # only the first call of this response is slow

    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_HEDGE_AFTER=0.2,
                         LLM_JUDGE_HEDGE_SHARE=1.0)
        try:
            fast = await core.score_batch([{"prompt": f"q{i}", "response": f"a{i}"}
                                           for i in range(20)])
            slow = await core.score("What is 2+2?", "4 SLOW-ONE")
            return fast, slow, core.status()
        finally:
            await core.aclose()

    fast, slow, status = asyncio.run(scenario())
    assert all(v.ok and "hedged" not in v.extra for v in fast)
    assert slow.ok and slow.score == pytest.approx(0.8)
    assert slow.extra["hedged"] == {"sent": 1, "won": 1, "after_s": 0.2, "winner": "hedge"}
    assert slow.attempts == 2
    assert server.model_calls == 22
    assert eventually(lambda: server.abandoned == 1)  # the fake saw the connection close
    hedging = status["hedging"]
    assert (hedging["sent"], hedging["won"], hedging["cancelled"]) == (1, 1, 1)
    assert hedging["in_flight"] == 0 and status["in_flight"][SPEC] == 0


def test_the_share_cap_holds_when_every_call_is_slow(tmp_path, server, monkeypatch) -> None:
    server.latency_s = 0.3

    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_HEDGE_AFTER=0.05,
                         LLM_JUDGE_HEDGE_SHARE=0.05)
        try:
            verdicts = await core.score_batch([{"prompt": f"q{i}", "response": f"a{i}"}
                                               for i in range(200)])
            return verdicts, core.status()
        finally:
            await core.aclose()

    verdicts, status = asyncio.run(scenario())
    hedged = [v for v in verdicts if "hedged" in v.extra]
    assert all(v.ok for v in verdicts)
    assert 1 <= status["hedging"]["sent"] <= 10  # 5% of the 200 dispatched
    assert len(hedged) == status["hedging"]["sent"]
    assert status["hedging"]["refused"]["share"] >= 190
    assert server.model_calls == 200 + status["hedging"]["sent"]


def test_hedges_respect_the_in_flight_limit(tmp_path, server, monkeypatch) -> None:
    server.latency_s = 0.3

    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_HEDGE_AFTER=0.05,
                         LLM_JUDGE_HEDGE_SHARE=1.0,
                         LLM_JUDGE_MAX_IN_FLIGHT_LITELLM=4)
        try:
            verdicts = await core.score_batch([{"prompt": f"q{i}", "response": f"a{i}"}
                                               for i in range(4)])
            return verdicts, core.status()
        finally:
            await core.aclose()

    verdicts, status = asyncio.run(scenario())
    assert all(v.ok and "hedged" not in v.extra for v in verdicts)
    assert status["hedging"]["sent"] == 0
    assert status["hedging"]["refused"]["in_flight"] == 4
    assert server.model_calls == 4


def test_no_hedge_during_a_429_storm(tmp_path, server, monkeypatch) -> None:
    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_HEDGE_AFTER=0.05,
                         LLM_JUDGE_HEDGE_SHARE=1.0)
        try:
            server.script(*[Behaviour.error(429, "slow down", retry_after=0)] * 4)
            limited = await core.score_batch([{"prompt": f"q{i}", "response": f"a{i}"}
                                              for i in range(4)])
            server.latency_s = 0.3  # the storm's calls that do get through are slow
            slow = await core.score_batch([{"prompt": f"p{i}", "response": f"b{i}"}
                                           for i in range(4)])
            return limited, slow, core.status()
        finally:
            await core.aclose()

    limited, slow, status = asyncio.run(scenario())
    assert all(v.status.value == "rate_limited" for v in limited), limited
    assert all(v.ok and "hedged" not in v.extra for v in slow)
    assert status["hedging"]["sent"] == 0
    assert server.model_calls == 8


def test_identical_requests_make_one_call_and_at_most_one_hedge(tmp_path, server,
                                                               monkeypatch) -> None:
    server.slow("SAME", 30.0)

    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_HEDGE_AFTER=0.2,
                         LLM_JUDGE_HEDGE_SHARE=1.0)
        try:
            await core.score_batch([{"prompt": f"q{i}", "response": f"a{i}"}
                                    for i in range(20)])
            calls = server.model_calls
            same = await core.score_batch([{"prompt": "2+2?", "response": "4 SAME"}] * 8)
            again = await core.score("2+2?", "4 SAME")
            return calls, same, again, core.status()
        finally:
            await core.aclose()

    before, same, again, status = asyncio.run(scenario())
    assert all(v.ok for v in same) and again.ok and again.cached
    assert server.model_calls - before == 2  # the first call and its hedge
    assert sum(not v.cached for v in same) == 1
    assert status["hedging"]["sent"] == 1


def test_hedges_go_to_the_backend_hedge_to_names(tmp_path, server, monkeypatch) -> None:
    server.slow("SLOW-TO", 30.0)
    fast = "litellm:openai/gpt-4.1-nano"

    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_HEDGE_AFTER=0.2,
                         LLM_JUDGE_HEDGE_SHARE=1.0, LLM_JUDGE_HEDGE_TO=fast)
        try:
            await core.score_batch([{"prompt": f"q{i}", "response": f"a{i}"}
                                    for i in range(20)])
            slow = await core.score("What is 2+2?", "4 SLOW-TO")
            return slow, core.status()
        finally:
            await core.aclose()

    slow, status = asyncio.run(scenario())
    assert slow.ok and slow.backend == fast and slow.model == "gpt-4.1-nano"
    assert slow.extra["hedged"] == {"sent": 1, "won": 1, "after_s": 0.2, "backend": fast,
                                    "winner": "hedge"}
    models = [r.body["model"] for r in server.requests if "SLOW-TO" in str(r.body)]
    assert models == ["gpt-4o-mini", "gpt-4.1-nano"]  # the first call, then its hedge
    assert status["in_flight"].get(fast, 0) == 0  # the hedge's slot on its own backend
