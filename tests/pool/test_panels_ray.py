"""A judge panel through the real actors (issue 23): the judge actor fans each request
out to three members over its workers (Ray actors), LiteLLM calls the fake provider over
real sockets, and the member scores are a known function of the model name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge.cli import format_live_status  # noqa: E402
from ray_judge.testing import FakeLLMServer  # noqa: E402

MEMBERS = ["@current", "litellm:openai/judge-b", "litellm:openai/judge-c"]
ESCALATE = "litellm:openai/judge-x"
SCORES = {"judge-a": 2, "judge-b": 4, "judge-c": 9, "judge-x": 7}  # out of 10


def reply(body):
    # judge-c agrees with the others except on responses marked SPLIT
    split = "SPLIT" in json.dumps(body["messages"])
    score = SCORES[body["model"]] if split or body["model"] != "judge-c" else 3
    return f"Judged.\nSCORE: {score}"


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer(reply=reply) as fake:
        yield fake


def test_a_panel_judges_through_the_judge_actor(cluster, server, judge_name,
                                                tmp_path: Path) -> None:
    judges = tmp_path / "judges.toml"
    judges.write_text(f"[judges.trio]\npanel = {json.dumps(MEMBERS)}\n"
                      f'aggregate = "median"\nescalate_to = "{ESCALATE}"\n'
                      f'escalate_when = "spread > 0.3"\n')
    env = {"LLM_JUDGE_NAME": "litellm:openai/judge-a", "LLM_JUDGE_JUDGES_FILE": str(judges),
           "LLM_JUDGE_BACKEND_FILE": str(tmp_path / ".judge_backend"),
           "LLM_JUDGE_NUM_WORKERS": "2", "LLM_JUDGE_MAX_ATTEMPTS": "1",
           "OPENAI_API_BASE": f"{server.url}/v1", "OPENAI_API_KEY": "sk-test-panels",
           "LITELLM_OFFLINE_MODE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    judge = ray_judge.start_judge(name=judge_name, env=env)
    try:
        calm = ray.get(judge.score_batch.remote(
            [{"prompt": "p", "response": f"r{i}", "judge": "trio"} for i in range(4)]),
            timeout=120)
        split = ray.get(judge.score.remote("p", "SPLIT", judge="trio"), timeout=60)
        status = ray.get(judge.status.remote())
        # what ray-judge eval sends: the panel, each member in a lane of its own (the
        # lanes are checked in tests/unit/test_panels_core.py); a bad one is refused
        evaluated = ray.get(judge.score_batch.remote(
            [{"prompt": "p", "response": "r0", "judge": "trio", "backend": "@panel",
              "sample": 1}]), timeout=60)
        with pytest.raises(ValueError, match="judge 'default' is not one"):
            ray.get(judge.score.remote("p", "r0", backend="@panel"), timeout=60)
    finally:
        ray_judge.stop_judge(name=judge_name)
    # 2, 4, 3 out of 10: median 0.3, spread 0.2, no escalation
    assert [v.score for v in calm] == pytest.approx([0.3] * 4), calm
    assert all(v.extra["escalated"] is False for v in calm)
    assert [m["backend"] for m in calm[0].extra["panel"]] == [
        "litellm:openai/judge-a", *MEMBERS[1:]]
    # 2, 4, 9: spread 0.7 > 0.3, judge-x decides 0.7
    assert split.extra["escalated"] and split.score == pytest.approx(0.7)
    assert evaluated[0].score == pytest.approx(0.3) and not evaluated[0].cached
    calls = [r.body["model"] for r in server.requests if r.body]
    assert calls.count("judge-x") == 1 and len(calls) == 6 * 3 + 1
    trio = status["panels"]["trio"]
    assert (trio["verdicts"], trio["escalated"], trio["calls"]["escalation"]) == (5, 1, 1)
    assert trio["agreement"]["n"] == 5
    assert re.search(r"judge-a", json.dumps(trio)) is None  # members by label, not resolution
    text = format_live_status(status)  # what show and ray-judge status print
    assert "  panel:    trio: 5 verdicts, 0 failed, escalated 1 (20.0%)" in text
