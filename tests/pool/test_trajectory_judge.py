"""A trajectory judge of a team's own, through the real pool (Ray actors) and the real
LiteLLM backend against the fake OpenAI API on 127.0.0.1.

The judge is ``examples/judges/judges.toml``: the team's rubric file, a user template
with a Dockerfile field and the trajectory, a fenced-YAML answer on 0-1, one correction
turn. The whole ~76 KB trajectory must reach the provider, the rubric verbatim; a first
answer that does not parse is corrected in one more turn; structured output is asked
for (the schema in the request body) and a model that ignores it is read by the text
parser; bad judges files and bad requests get their clear errors while the judge serves.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.agent_trajectory import DOCKERFILE, TASK, trajectory

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import JudgeDefinition, JudgeDefinitionError, Status  # noqa: E402
from ray_judge.judging.transcript import render_transcript  # noqa: E402
from ray_judge.testing import Behaviour, FakeLLMServer  # noqa: E402

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
JUDGES_FILE = REPO / "examples" / "judges" / "judges.toml"
RUBRIC = (REPO / "examples" / "judges" / "prompts" / "terminal_agent.md").read_text()
SPEC = "litellm:openai/trajectory-judge"
NAME = "trajectory_judge_test"
CODE_JUDGE = JudgeDefinition(name="pass_fail", system="Say PASS or FAIL.",
                             parser=r"regex:VERDICT: (\w+)", labels={"PASS": 1, "FAIL": 0})


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as fake:
        yield fake


def env_for(server: FakeLLMServer, tmp: Path, **extra: str) -> dict[str, str]:
    return {"LLM_JUDGE_NAME": SPEC, "LLM_JUDGE_BACKEND_FILE": str(tmp / ".judge_backend"),
            "LLM_JUDGE_NUM_WORKERS": "2", "LLM_JUDGE_ACTOR_NAME": NAME,
            "LLM_JUDGE_JUDGES_FILE": str(JUDGES_FILE), "LLM_JUDGE_BACKOFF": "0",
            "OPENAI_API_BASE": f"{server.url}/v1", "OPENAI_API_KEY": "sk-test-trajectory",
            "LITELLM_OFFLINE_MODE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True", **extra}


@pytest.fixture(scope="module")
def judge(cluster, server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trajectory")
    handle = ray_judge.start_judge(env=env_for(server, tmp), judges=[CODE_JUDGE])
    # Warm both workers (each imports litellm on its first call).
    warm = ray.get(handle.score_batch.remote(
        [{"prompt": "p", "response": f"warm {i}"} for i in range(6)]), timeout=180)
    assert all(v.ok for v in warm), warm
    yield handle
    ray_judge.stop_judge(name=NAME)


def chat_bodies(server: FakeLLMServer) -> list[dict]:
    return [r.body for r in server.requests if r.path.endswith("/chat/completions")]


def score_trajectory(judge, judge_name: str, **fields: str):
    return ray.get(judge.score.remote(TASK, trajectory(), judge=judge_name,
                                      fields={"dockerfile": DOCKERFILE, **fields}),
                   timeout=120)


def test_a_trajectory_judge_gets_the_whole_trajectory_and_one_correction_turn(
        judge, server) -> None:
    server.reset()
    server.script(Behaviour.ok("The agent found the bug and verified it. I'd say 0.9."),
                  Behaviour.ok("Sorry.\n\n```yaml\nscore: 0.9\n```"))
    verdict = score_trajectory(judge, "terminal_agent")
    assert verdict.status is Status.OK and verdict.score == 0.9, verdict
    versions = ray.get(judge.status.remote())["judges"]
    assert verdict.judge == "terminal_agent"
    assert verdict.judge_version == versions["terminal_agent"]
    assert (verdict.attempts, verdict.format_retries) == (2, 1)
    first, second = chat_bodies(server)
    system, user = first["messages"]
    assert system["role"] == "system" and system["content"].endswith(RUBRIC)  # verbatim
    assert "fenced YAML block" in system["content"] and "SCORE: N" not in system["content"]
    transcript = render_transcript(trajectory())
    assert len(transcript) > 60_000
    assert (f"# Agent trajectory:\n<<<BEGIN RESPONSE>>>\n{transcript}\n<<<END RESPONSE>>>"
            in user["content"])  # whole, not cut
    assert f"<<<BEGIN DOCKERFILE>>>\n{DOCKERFILE}\n<<<END DOCKERFILE>>>" in user["content"]
    assert second["messages"][:2] == first["messages"]
    bad, correction = second["messages"][2:]
    assert bad == {"role": "assistant",
                   "content": "The agent found the bug and verified it. I'd say 0.9."}
    assert correction["role"] == "user" and "could not be read" in correction["content"]
    assert "fenced YAML block with score" in correction["content"]
    assert "response_format" not in first


def test_structured_output_is_asked_for_and_a_model_that_ignores_it_is_read_as_text(
        judge, server) -> None:
    server.reset()
    server.script(Behaviour.ok('{"score": 0.75}'),
                  Behaviour.ok("Ignoring the schema.\n```yaml\nscore: 0.25\n```"))
    structured = score_trajectory(judge, "terminal_agent_structured")
    ignored = ray.get(judge.score.remote(TASK, trajectory()[:-1],
                                         judge="terminal_agent_structured",
                                         fields={"dockerfile": DOCKERFILE}), timeout=120)
    assert (structured.score, structured.extra) == (0.75, {"structured": True}), structured
    assert (ignored.score, ignored.extra) == (0.25, {"structured": False}), ignored
    for body in chat_bodies(server):
        schema = body["response_format"]["json_schema"]["schema"]
        assert schema["required"] == ["score"] and schema["properties"]["score"]["maximum"] == 1


def test_a_judge_defined_in_code_reaches_the_workers_and_survives_a_worker_restart(
        judge, server) -> None:
    server.reset()
    server.default = Behaviour.ok("VERDICT: PASS")
    try:
        assert ray.get(judge.score.remote("t", "r0", judge="pass_fail")).score == 1.0
        pids = [w["pid"] for w in ray.get(judge.workers_info.remote())]
        for pid in pids:
            os.kill(pid, 9)
        deadline = time.monotonic() + 120
        while not all(w["alive"] and w["pid"] not in pids
                      for w in ray.get(judge.workers_info.remote())):
            assert time.monotonic() < deadline, "killed workers did not restart"
            time.sleep(0.5)
        verdicts = ray.get(judge.score_batch.remote(
            [{"prompt": "t", "response": f"r{i}", "judge": "pass_fail"} for i in range(1, 5)]),
            timeout=120)
        assert [(v.status, v.score, v.judge) for v in verdicts] == [
            (Status.OK, 1.0, "pass_fail")] * 4, verdicts
    finally:
        server.default = Behaviour()


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"judge": "terminal_agnet"}, ValueError,
     "unknown judge 'terminal_agnet'; known: default, group, pairwise, terminal_agent, "
     "terminal_agent_structured, pass_fail"),
    ({"judge": "terminal_agent"}, ValueError, "judge 'terminal_agent' needs dockerfile"),
    ({"judge": "terminal_agent", "fields": {"dockerfile": b"FROM x"}}, TypeError,
     "request.fields['dockerfile'] must be a string, got bytes"),
    ({"judge": "terminal_agent", "fields": {"dockerfile": "x", "extra": "y"}}, ValueError,
     "does not use the field(s) ['extra']"),
])
def test_bad_requests_get_a_clear_error_and_the_judge_keeps_serving(judge, kwargs, error,
                                                                    words) -> None:
    pid = ray.get(judge.status.remote())["pid"]
    with pytest.raises(error) as info:
        ray.get(judge.score.remote(TASK, "r", **kwargs), timeout=60)
    assert words in str(info.value)
    batch = [{"prompt": "p", "response": "ok"}, {"prompt": TASK, "response": "r", **kwargs}]
    with pytest.raises(error) as info:
        ray.get(judge.score_batch.remote(batch), timeout=60)
    assert "request[1]" in str(info.value)
    assert ray.get(judge.score.remote("What is 2+2?", "4"), timeout=60).ok
    assert ray.get(judge.status.remote())["pid"] == pid


def test_a_malformed_message_names_its_index_and_key(judge) -> None:
    messages = trajectory()
    messages[5] = {**messages[5], "tool_call_id": 17}
    with pytest.raises(TypeError, match=r"request\.response\[5\]\.tool_call_id must be a "
                                        r"string, got int"):
        ray.get(judge.score.remote(TASK, messages, judge="terminal_agent",
                                   fields={"dockerfile": DOCKERFILE}), timeout=60)


@pytest.mark.parametrize(("text", "words"), [
    ("[judges.a]\nsystem = 'x'\nparser = 'yaml:score'\nscale = [0, 1]\nsampels = 2\n",
     "judge 'a': unknown key(s) ['sampels']"),
    ("[judges.a]\nsystem = 'x'\nparser = 'toml:score'\n", "judge 'a': parser: unknown parser"),
])
def test_a_bad_judges_file_fails_start_up_in_the_caller(judge, server, tmp_path, text,
                                                        words) -> None:
    bad = tmp_path / "judges.toml"
    bad.write_text(text)
    env = env_for(server, tmp_path, LLM_JUDGE_JUDGES_FILE=str(bad),
                  LLM_JUDGE_ACTOR_NAME="bad_judges_file")
    with pytest.raises(JudgeDefinitionError) as info:
        ray_judge.start_judge(env=env)
    assert str(bad) in str(info.value) and words in str(info.value)
    with pytest.raises(ValueError):
        ray.get_actor("bad_judges_file", namespace="ray_judge")
    assert ray.get(judge.score.remote("What is 2+2?", "4"), timeout=60).ok


def test_starting_again_with_other_definitions_warns_and_keeps_the_running_judge(
        judge, server, tmp_path, caplog) -> None:
    changed = JudgeDefinition(name="pass_fail", system="Say PASS or FAIL, strictly.",
                              parser=r"regex:VERDICT: (\w+)", labels={"PASS": 1, "FAIL": 0})
    with caplog.at_level("WARNING", logger="ray_judge"):
        again = ray_judge.start_judge(env=env_for(server, tmp_path), judges=[changed])
    assert ray.get(again.status.remote())["pid"] == ray.get(judge.status.remote())["pid"]
    assert "other definitions of pass_fail" in caplog.text


def test_status_and_the_cli_name_the_judges(judge) -> None:
    from ray_judge.cli import format_live_status

    status = ray.get(judge.status.remote())
    assert list(status["judges"]) == ["default", "group", "pairwise", "terminal_agent",
                                      "terminal_agent_structured", "pass_fail"]
    assert all(len(v) == 12 for v in status["judges"].values())
    text = format_live_status(status)
    assert f"terminal_agent ({status['judges']['terminal_agent']})" in text
    json.dumps(status)  # `ray-judge status --json` prints it
