"""The spend budget on a real Ray cluster: a restarted judge remembers what it spent.

The model is a FakeBackend (through the backend registry) whose every call reports
0.01 USD (``litellm:fake/paid$0.01``), a billed backend; the policies themselves are
tested through the judge's core in tests/unit/test_budget.py.
"""

from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import Status  # noqa: E402

pytestmark = pytest.mark.ray
FAKE = {"litellm": "ray_judge.backends.fake:FakeBackend",
        "ccode": "ray_judge.backends.fake:FakeBackend"}
WAIT_S = 120.0
COST, LIMIT, IN_FLIGHT = 0.01, 0.1, 4


def test_a_restarted_judge_remembers_its_spend_from_the_cache_file(cluster, judge_name,
                                                                   tmp_path) -> None:
    env = {
        "LLM_JUDGE_NAME": f"litellm:fake/paid${COST}",
        "LLM_JUDGE_BACKEND_FILE": str(tmp_path / ".judge_backend"),
        "LLM_JUDGE_CACHE_PATH": str(tmp_path / "cache.db"),
        "LLM_JUDGE_BUDGET_USD": str(LIMIT), "LLM_JUDGE_BUDGET_POLICY": "fail",
        "LLM_JUDGE_MAX_IN_FLIGHT_LITELLM": str(IN_FLIGHT),
        "LLM_JUDGE_NUM_WORKERS": "2", "LLM_JUDGE_RESERVOIR_SIZE": "0",
        "LITELLM_OFFLINE_MODE": "true",
    }
    judge = ray_judge.start_judge(name=judge_name, env=env, backend_registry=FAKE)
    try:
        verdicts = ray.get(judge.score_batch.remote(
            [{"prompt": "Grade it.", "response": f"answer {i}"} for i in range(40)]),
            timeout=WAIT_S)
        before = ray.get(judge.status.remote(), timeout=WAIT_S)
        spent = before["budget"]["spent_usd"]
        assert spent == pytest.approx(sum(v.ok for v in verdicts) * COST)
        assert LIMIT - 1e-9 <= spent < LIMIT + IN_FLIGHT * COST, spent  # the in-flight bound
        assert {v.status for v in verdicts} == {Status.OK, Status.BUDGET_EXHAUSTED}

        ray.kill(judge, no_restart=False)  # Ray restarts it: a new process, same cache file
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                after = ray.get(judge.status.remote(), timeout=10)
                if after["pid"] != before["pid"]:
                    break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
            assert time.monotonic() < deadline, "the judge did not come back"
            time.sleep(0.2)
        assert after["budget"]["spent_usd"] == pytest.approx(spent)
        assert after["budget"]["reached"] == "run" and after["budget"]["persistent"]
        again = ray.get(judge.score.remote("Grade it.", "a new answer"), timeout=WAIT_S)
        assert again.status is Status.BUDGET_EXHAUSTED and again.score is None
        assert again.retry_after is None  # a run's limit does not refill
    finally:
        ray_judge.stop_judge(name=judge_name)
