"""Hedged calls through the real actors (issue 27): workers ask the judge actor for each
hedge's permit over Ray, and LiteLLM's calls go over real sockets to the fake provider,
which makes the chosen request slow and sees its connection closed when the hedge wins."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge.testing import FakeLLMServer  # noqa: E402

SPEC = "litellm:openai/judge-h"


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as fake:
        yield fake


def test_a_slow_call_is_hedged_through_the_judge_actor(cluster, server, judge_name,
                                                       tmp_path: Path) -> None:
    env = {"LLM_JUDGE_NAME": SPEC, "LLM_JUDGE_BACKEND_FILE": str(tmp_path / ".judge_backend"),
           "LLM_JUDGE_NUM_WORKERS": "2", "LLM_JUDGE_HEDGE_AFTER": "0.5",
           "LLM_JUDGE_HEDGE_SHARE": "1", "LLM_JUDGE_MAX_ATTEMPTS": "1",
           "OPENAI_API_BASE": f"{server.url}/v1", "OPENAI_API_KEY": "sk-test-hedging",
           "LITELLM_OFFLINE_MODE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    judge = ray_judge.start_judge(name=judge_name, env=env)
    try:
        warm = ray.get(judge.score_batch.remote(
            [{"prompt": "p", "response": str(i)} for i in range(8)]), timeout=120)
        assert all(v.ok and "hedged" not in v.extra for v in warm), warm
        server.slow("SLOW-RAY", 60.0)
        verdict = ray.get(judge.score.remote("What is 2+2?", "4 SLOW-RAY"), timeout=60)
        status = ray.get(judge.status.remote())
    finally:
        ray_judge.stop_judge(name=judge_name)
    assert verdict.ok and verdict.extra["hedged"]["winner"] == "hedge", verdict
    assert verdict.attempts == 2
    hedging = status["hedging"]
    assert (hedging["sent"], hedging["won"], hedging["in_flight"]) == (1, 1, 0)
    assert status["in_flight"][SPEC] == 0  # the hedge's slot came back
    give_up = time.monotonic() + 10
    while server.abandoned < 1 and time.monotonic() < give_up:
        time.sleep(0.05)
    assert server.abandoned == 1 and server.model_calls == 10
