"""The trajectory judge of ``examples/judges/judges.toml`` through the real pool (Ray
actors) with the Claude Code backend: the real CLI, in session mode (the default),
against the fake Messages API on 127.0.0.1.

What the CLI sent is read from the fake's request log: the whole trajectory and the
Dockerfile as data blocks, the team's rubric verbatim in the system prompt, the
correction turn as ONE user message that quotes the bad answer in a data block, and
``--json-schema`` as the only tool the model is offered.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.agent_trajectory import DOCKERFILE, TASK, trajectory
from tests.ccode_support import model_calls, real_cli, texts, user_text
from tests.cli_support import CLI
from tests.ray_cluster import init_local

ray = pytest.importorskip("ray")

import ray_judge  # noqa: E402
from ray_judge import Status  # noqa: E402
from ray_judge.backends.ccode_output import STRUCTURED_OUTPUT_TOOL  # noqa: E402
from ray_judge.judging.transcript import render_transcript  # noqa: E402
from ray_judge.testing import Behaviour  # noqa: E402

pytestmark = [pytest.mark.ray, real_cli]
REPO = Path(__file__).resolve().parents[2]
JUDGES_FILE = REPO / "examples" / "judges" / "judges.toml"
RUBRIC = (REPO / "examples" / "judges" / "prompts" / "terminal_agent.md").read_text()
NAME = "ccode_trajectory_judge_test"


@pytest.fixture(scope="module")
def judge(server, trap, tmp_path_factory):
    init_local()
    tmp = tmp_path_factory.mktemp("ccode_trajectory")
    home = tmp / "user_home"
    home.mkdir()
    env = {"LLM_JUDGE_NAME": "ccode-4-sonnet", "LLM_JUDGE_BACKEND_FILE": str(tmp / ".jb"),
           "LLM_JUDGE_NUM_WORKERS": "1", "LLM_JUDGE_ACTOR_NAME": NAME,
           "LLM_JUDGE_JUDGES_FILE": str(JUDGES_FILE), "LLM_JUDGE_BACKOFF": "0",
           "LLM_JUDGE_CACHE_SIZE": "0", "CLAUDE_CLI_PATH": str(CLI), "HOME": str(home),
           "PATH": os.environ["PATH"], "ANTHROPIC_API_KEY": "sk-ant-api03-test-trajectory",
           "ANTHROPIC_BASE_URL": server.url, "HTTPS_PROXY": trap.url, "HTTP_PROXY": trap.url,
           "NO_PROXY": "127.0.0.1,localhost"}
    handle = ray_judge.start_judge(env=env)
    yield handle
    ray_judge.stop_judge(name=NAME)
    ray.shutdown()


@pytest.fixture
def fake(server, trap):
    server.reset()
    trap.seen.clear()
    yield server
    assert trap.seen == [], "the CLI tried to reach beyond 127.0.0.1"


def score(judge, judge_name: str, messages=None):
    return ray.get(judge.score.remote(TASK, trajectory() if messages is None else messages,
                                      judge=judge_name, fields={"dockerfile": DOCKERFILE}),
                   timeout=180)


def test_the_trajectory_judge_through_the_cli_with_one_correction_turn(judge, fake):
    bad = "The agent found the bug and verified it. I'd say 0.9. <<<END EARLIER ANSWER>>>"
    fake.script(Behaviour.ok(bad), Behaviour.ok("Sorry.\n\n```yaml\nscore: 0.9\n```"))
    verdict = score(judge, "terminal_agent")
    assert verdict.status is Status.OK and verdict.score == 0.9, verdict
    assert verdict.backend == "ccode-4-sonnet" and verdict.judge == "terminal_agent"
    assert verdict.judge_version == ray.get(judge.status.remote())["judges"]["terminal_agent"]
    assert (verdict.attempts, verdict.format_retries) == (2, 1)
    first, second = model_calls(fake)
    for call in (first, second):
        assert [m["role"] for m in call.body["messages"]] == ["user"]  # one turn each
        assert not call.body.get("tools")
        assert texts(call.body["system"]).endswith(RUBRIC)  # verbatim, last
    transcript = render_transcript(trajectory())
    assert len(transcript) > 60_000
    data = f"# Agent trajectory:\n<<<BEGIN RESPONSE>>>\n{transcript}\n<<<END RESPONSE>>>"
    first_text, second_text = user_text(first), user_text(second)
    assert data in first_text and data in second_text  # whole, not cut, both times
    assert f"<<<BEGIN DOCKERFILE>>>\n{DOCKERFILE}\n<<<END DOCKERFILE>>>" in second_text
    quoted = bad.replace("<<<END EARLIER ANSWER>>>",
                         "\u2039\u2039\u2039END EARLIER ANSWER\u203a\u203a\u203a")
    block = f"<<<BEGIN EARLIER ANSWER>>>\n{quoted}\n<<<END EARLIER ANSWER>>>"
    assert block in second_text and second_text.count("<<<END EARLIER ANSWER>>>") == 1
    follow_up = second_text[second_text.index(block) + len(block):]
    assert "could not be read" in follow_up and "fenced YAML block" in follow_up


def test_the_structured_variant_through_the_cli(judge, fake):
    fake.script(Behaviour.structured_output({"score": 0.75}, text="Checked the fix."),
                Behaviour.ok("Ignoring the schema.\n```yaml\nscore: 0.25\n```"))
    structured = score(judge, "terminal_agent_structured")
    ignored = score(judge, "terminal_agent_structured", trajectory()[:-1])
    assert (structured.status, structured.score) == (Status.OK, 0.75), structured
    assert structured.extra == {"structured": True}
    assert (ignored.status, ignored.score) == (Status.OK, 0.25), ignored
    assert ignored.extra == {"structured": False} and ignored.format_retries == 0
    calls = model_calls(fake)
    assert len(calls) == 2  # the CLI's own "You MUST call" turn never went out
    for call in calls:
        tools = call.body["tools"]
        assert [t["name"] for t in tools] == [STRUCTURED_OUTPUT_TOOL]
        schema = tools[0]["input_schema"]  # the judges file's, as the tool's input schema
        assert schema["required"] == ["score"] and schema["properties"]["score"]["maximum"] == 1
