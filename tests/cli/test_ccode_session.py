"""The ccode backend in session mode: the real CLI, long-lived, against the fake Messages API.

What must hold, each proven here from the fake server's request log or from /proc: one
process serves many verdicts, each in a fresh context (item 2's request carries nothing
of item 1), no tool is offered, a process is replaced after N verdicts, when it dies and
when it hangs (its whole group killed), errors are classified as in one-shot mode, and
nothing is left running after ``aclose``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_judge.backends import create_backend
from ray_judge.backends.ccode import ClaudeCodeBackend
from ray_judge.backends.ccode_session import ClaudeCodeSessionBackend
from ray_judge.config import JudgeConfig
from ray_judge.errors import ConfigError
from ray_judge.judging.rubric import Rubric
from ray_judge.judging.runner import JudgeRunner
from ray_judge.spec import CCODE_MODELS, BackendSpec
from ray_judge.testing.fake_llm import Behaviour
from ray_judge.verdict import JudgeRequest
from tests.ccode_support import (
    OAUTH_TOKEN,
    alive_in_group,
    assert_group_gone,
    model_calls,
    real_cli,
    recording_spawn,
    texts,
    user_text,
    zombie_children,
)
from tests.cli_support import CLI, proc_stats

MODEL = CCODE_MODELS["ccode-4-sonnet"]


def make(environ: dict, pids: list[int] | None = None, **config) -> ClaudeCodeSessionBackend:
    settings = {"timeout_s": 30.0, "deadline_s": 120.0, "max_attempts": 1, "backoff_s": 0.0,
                "ccode_sessions": 1, **config}
    kwargs = {} if pids is None else {"spawn": recording_spawn(pids)}
    return ClaudeCodeSessionBackend(BackendSpec.ccode("ccode-4-sonnet"),
                                    JudgeConfig(claude_cli_path=CLI, **settings),
                                    environ=environ, **kwargs)


def request(response: str, **fields) -> JudgeRequest:
    return JudgeRequest(prompt="What is 2+2?", response=response, **fields)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- verdicts and fresh contexts -------------------------------------------------------

@real_cli
def test_one_process_serves_verdicts_each_in_a_fresh_context(fake, env, tmp_path):
    fake.script(Behaviour.ok("Right.\nSCORE: 9"), Behaviour.ok("Wrong.\nSCORE: 1"),
                Behaviour.ok("Half.\nSCORE: 5"))
    pids: list[int] = []
    b = make(env, pids)
    private = b._home.root
    markers = ["FIRST-ITEM-a1b2c3", "SECOND-ITEM-d4e5f6", "THIRD-ITEM-g7h8i9"]

    async def scenario():
        try:
            verdicts = []
            for marker in markers:
                verdicts.append(await JudgeRunner(b).judge(request(f"The answer is 4. {marker}")))
                await wait_until(lambda: len(b._idle) == 1)  # the clear has finished
            return verdicts
        finally:
            await b.aclose()

    verdicts = run(scenario())
    assert [(v.status, v.score) for v in verdicts] == [("ok", 0.9), ("ok", 0.1), ("ok", 0.5)]
    assert all(v.model == MODEL and v.input_tokens and v.cost_usd for v in verdicts)
    assert len(pids) == 1 and b.started == 1 and b.served == 3  # one process for all three
    calls = model_calls(fake)
    assert len(calls) == 3  # a /clear never reaches the API
    for i, call in enumerate(calls):
        text = user_text(call)
        assert markers[i] in text
        for other in markers[:i]:  # nothing of an earlier item, in any message
            assert other not in json.dumps(call.body), f"item {i + 1} saw {other}"
        assert [m["role"] for m in call.body["messages"]] == ["user"]
        assert not call.body.get("tools")  # --tools "": nothing the judge could run
        assert Rubric.default().system in texts(call.body["system"])
        assert markers[i] not in texts(call.body["system"])
    assert_group_gone(pids[0])
    assert not private.exists()


@real_cli
def test_the_command_line_keeps_every_security_flag_of_one_shot_mode(env, tmp_path):
    b = make(env)
    try:
        argv = b.session_argv("SYSTEM", tmp_path)
        oneshot = b.argv("SYSTEM", tmp_path)
    finally:
        asyncio.run(b.aclose())
    assert argv[:6] == [b.cli, "-p", "--input-format", "stream-json", "--output-format",
                        "stream-json"]
    assert argv[-1] == "--verbose"
    assert argv[6:-1] == oneshot[4:]  # --model ... --tools "" ... --safe-mode, unchanged
    at = argv.index("--tools")
    assert argv[at + 1] == ""
    assert {"--safe-mode", "--no-session-persistence"} <= set(argv)
    assert argv[argv.index("--max-turns") + 1] == "1"


@real_cli
def test_concurrent_items_share_the_pool_and_each_system_prompt_gets_its_own(fake, env):
    b = make(env, ccode_sessions=2)
    rubric_a = "Grade {response} for politeness only. RUBRIC-A"
    rubric_b = "Grade {response} for brevity only. RUBRIC-B"

    async def scenario():
        try:
            runner = JudgeRunner(b)
            first = await asyncio.gather(*(runner.judge(request(f"answer {i}")) for i in range(6)))
            started_default = b.started
            await wait_until(lambda: len(b._idle) == 2)
            second = [await JudgeRunner(b).judge(request("x", rubric=rubric_a)),
                      await JudgeRunner(b).judge(request("y", rubric=rubric_b)),
                      await JudgeRunner(b).judge(request("z", rubric=rubric_a))]
            return first, started_default, second
        finally:
            await b.aclose()

    first, started_default, second = run(scenario())
    assert [v.status for v in first + second] == ["ok"] * 9
    assert started_default == 2  # six concurrent items, two processes
    assert b.started == 4  # A and B each evicted an idle default session; A came back to A
    systems = [texts(c.body["system"]) for c in model_calls(fake)[6:]]
    assert "RUBRIC-A" in systems[0] and "RUBRIC-B" in systems[1] and "RUBRIC-A" in systems[2]
    assert "RUBRIC-A" not in systems[1]


# -- replacement -----------------------------------------------------------------------

@real_cli
def test_a_process_is_replaced_after_n_items(fake, env):
    pids: list[int] = []
    b = make(env, pids, ccode_session_items=2)

    async def scenario():
        try:
            verdicts = [await JudgeRunner(b).judge(request(f"answer {i}")) for i in range(5)]
            await wait_until(lambda: all(alive_in_group(p) == [] for p in pids[:2]))
            return verdicts
        finally:
            await b.aclose()

    verdicts = run(scenario())
    assert [v.status for v in verdicts] == ["ok"] * 5
    assert len(pids) == 3 and b.started == 3  # items 1-2, 3-4, 5
    for pid in pids:
        assert_group_gone(pid)


@real_cli
def test_a_killed_process_is_replaced_and_the_next_verdict_is_ok(fake, env):
    pids: list[int] = []
    b = make(env, pids)

    async def scenario():
        try:
            first = await JudgeRunner(b).judge(request("before"))
            await wait_until(lambda: len(b._idle) == 1)
            os.killpg(pids[0], signal.SIGKILL)
            await wait_until(lambda: b.pids == [])
            second = await JudgeRunner(b).judge(request("after"))
            return first, second
        finally:
            await b.aclose()

    first, second = run(scenario())
    assert (first.status, second.status) == ("ok", "ok")
    assert len(pids) == 2
    assert_group_gone(pids[0])


@real_cli
def test_a_process_killed_mid_item_is_a_backend_error_and_is_replaced(fake, env):
    fake.script(Behaviour.hang())
    pids: list[int] = []
    b = make(env, pids, max_attempts=2)

    async def scenario():
        try:
            task = asyncio.ensure_future(JudgeRunner(b).judge(request("x")))
            await wait_until(lambda: len(model_calls(fake)) == 1)
            os.killpg(pids[0], signal.SIGKILL)
            return await task
        finally:
            await b.aclose()

    verdict = run(scenario())
    assert verdict.status == "ok" and verdict.attempts == 2  # the retry got a new process
    assert len(pids) == 2
    assert_group_gone(pids[0])


@real_cli
def test_timeout_kills_the_session_process_group(fake, env):
    fake.default = Behaviour.hang()
    pids: list[int] = []
    b = make(env, pids, timeout_s=3.0)

    async def scenario():
        try:
            start = time.monotonic()
            verdict = await JudgeRunner(b).judge(request("x"))
            return verdict, time.monotonic() - start
        finally:
            await b.aclose()

    verdict, elapsed = run(scenario())
    assert verdict.status == "timeout" and verdict.score is None, verdict
    assert "process group was killed" in verdict.error
    assert 3.0 <= elapsed < 6.0
    [pid] = pids
    assert_group_gone(pid)


@real_cli
def test_cancellation_kills_the_session(fake, env):
    fake.default = Behaviour.hang()
    pids: list[int] = []
    b = make(env, pids)

    async def scenario():
        task = asyncio.ensure_future(JudgeRunner(b).judge(request("x")))
        await wait_until(lambda: len(model_calls(fake)) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(lambda: alive_in_group(pids[0]) == [], timeout=3)
        await b.aclose()

    run(scenario())
    assert_group_gone(pids[0])


# -- errors ------------------------------------------------------------------------------

@real_cli
def test_usage_limit_is_classified_and_the_session_serves_on(fake, env):
    reset = int(time.time()) + 2 * 3600
    headers = {"anthropic-ratelimit-unified-status": "rejected",
               "anthropic-ratelimit-unified-reset": str(reset),
               "anthropic-ratelimit-unified-representative-claim": "five_hour",
               "anthropic-ratelimit-unified-5h-status": "rejected",
               "anthropic-ratelimit-unified-5h-reset": str(reset),
               "anthropic-ratelimit-unified-5h-utilization": "1.0"}
    fake.script(Behaviour(text="rate limited", status=429, headers=headers))
    env = {**env, "CLAUDE_CODE_OAUTH_TOKEN": OAUTH_TOKEN}
    del env["ANTHROPIC_API_KEY"]
    b = make(env, max_attempts=3)

    async def scenario():
        try:
            limited = await JudgeRunner(b).judge(request("x"))
            await wait_until(lambda: len(b._idle) == 1)
            return limited, await JudgeRunner(b).judge(request("y"))
        finally:
            await b.aclose()

    limited, after = run(scenario())
    assert limited.status == "usage_limited" and limited.attempts == 1, limited
    assert limited.raw.startswith("You've hit your 5-hour limit · resets ")
    assert limited.resets_at == reset - reset % 60
    assert after.status == "ok" and b.started == 1  # an API error does not cost the process
    assert model_calls(fake)[0].headers["authorization"] == f"Bearer {OAUTH_TOKEN}"


@real_cli
def test_429_and_500_are_classified_as_in_one_shot_mode(fake, env):
    fake.script(Behaviour.error(429, "slow down"), Behaviour.error(500, "boom"))
    b = make(env)

    async def scenario():
        try:
            out = []
            for _ in range(2):
                out.append(await JudgeRunner(b).judge(request("x")))
                await wait_until(lambda: len(b._idle) == 1)
            return out
        finally:
            await b.aclose()

    limited, failed = run(scenario())
    assert limited.status == "rate_limited" and "Request rejected (429)" in limited.error
    assert failed.status == "backend_error" and "500" in failed.error


# -- closing -----------------------------------------------------------------------------

@real_cli
def test_no_process_is_left_after_aclose_idle_or_busy(fake, env):
    fake.script(Behaviour.ok("SCORE: 7"), Behaviour.ok("SCORE: 7"))
    pids: list[int] = []
    b = make(env, pids, ccode_sessions=3)
    private = b._home.root

    async def scenario():
        runner = JudgeRunner(b)
        await asyncio.gather(runner.judge(request("a")), runner.judge(request("b")))
        fake.default = Behaviour.hang()
        busy = asyncio.ensure_future(runner.judge(request("c")))
        await wait_until(lambda: len(model_calls(fake)) == 3)
        assert len(b.pids) >= 2
        start = time.monotonic()
        await b.aclose()
        closed_in = time.monotonic() - start
        verdict = await asyncio.wait_for(busy, 10)
        return closed_in, verdict

    closed_in, verdict = run(scenario())
    assert closed_in < 5.0
    assert verdict.status == "backend_error" and verdict.score is None
    assert len(pids) >= 2
    for pid in pids:
        assert_group_gone(pid)
    assert zombie_children() == []
    assert not private.exists()
    with pytest.raises(Exception, match="closed"):
        asyncio.run(b.complete(Rubric.default().render(request("d"), 1000), timeout=5))


# -- selection and settings --------------------------------------------------------------

def fake_executable(tmp_path: Path) -> str:
    path = tmp_path / "claude"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("mode, cls", [("session", ClaudeCodeSessionBackend),
                                       ("oneshot", ClaudeCodeBackend)])
def test_the_mode_setting_chooses_the_class(tmp_path, mode, cls):
    config = JudgeConfig.from_env({"LLM_JUDGE_CCODE_MODE": mode,
                                   "CLAUDE_CLI_PATH": fake_executable(tmp_path)})
    b = create_backend(BackendSpec.ccode(), config)
    try:
        assert type(b) is cls
    finally:
        asyncio.run(b.aclose())


def test_a_registry_entry_for_ccode_still_wins(tmp_path):
    config = JudgeConfig.from_env({"LLM_JUDGE_CCODE_MODE": "session"})
    b = create_backend(BackendSpec.ccode(), config,
                       registry={"ccode": "ray_judge.backends.fake:FakeBackend"})
    assert type(b).__name__ == "FakeBackend"


def test_session_settings_and_the_default_pool_size():
    config = JudgeConfig.from_env({})
    assert (config.ccode_mode, config.ccode_session_items, config.ccode_session_idle_s) == (
        "session", 500, 60.0)
    config = JudgeConfig.from_env({"LLM_JUDGE_MAX_IN_FLIGHT_CCODE": "10",
                                   "LLM_JUDGE_NUM_WORKERS": "4"})
    assert config.ccode_sessions_per_worker() == 3  # ceil(10 / 4): the worker's share
    config = JudgeConfig.from_env({"LLM_JUDGE_CCODE_SESSIONS": "7",
                                   "LLM_JUDGE_CCODE_SESSION_ITEMS": "20",
                                   "LLM_JUDGE_CCODE_SESSION_IDLE": "0"})
    assert (config.ccode_sessions_per_worker(), config.ccode_session_items,
            config.ccode_session_idle_s) == (7, 20, 0.0)


@pytest.mark.parametrize("name, value", [("LLM_JUDGE_CCODE_MODE", "forever"),
                                         ("LLM_JUDGE_CCODE_SESSION_ITEMS", "0"),
                                         ("LLM_JUDGE_CCODE_SESSIONS", "-1"),
                                         ("LLM_JUDGE_CCODE_SESSION_IDLE", "soon")])
def test_bad_session_settings_name_the_variable(name, value):
    with pytest.raises(ConfigError) as info:
        JudgeConfig.from_env({name: value})
    assert (info.value.name, info.value.value) == (name, value)
    assert name in str(info.value) and repr(value) in str(info.value)


@real_cli
def test_idle_sessions_are_closed_after_the_idle_limit(fake, env):
    pids: list[int] = []
    b = make(env, pids, ccode_session_idle_s=0.5)

    async def scenario():
        try:
            verdict = await JudgeRunner(b).judge(request("x"))
            await wait_until(lambda: pids and alive_in_group(pids[0]) == [], timeout=10)
            return verdict
        finally:
            await b.aclose()

    assert run(scenario()).status == "ok"
    assert_group_gone(pids[0])


_WORKER = """
import asyncio, json, os, sys
from ray_judge.backends.ccode_session import ClaudeCodeSessionBackend
from ray_judge.config import JudgeConfig
from ray_judge.judging.runner import JudgeRunner
from ray_judge.spec import BackendSpec
from ray_judge.verdict import JudgeRequest

env = json.loads(sys.argv[1])
config = JudgeConfig(claude_cli_path=env.pop("CLI"), timeout_s=300.0, max_attempts=1)
backend = ClaudeCodeSessionBackend(BackendSpec.ccode(), config, environ=env)
asyncio.run(JudgeRunner(backend).judge(JudgeRequest("p", "r")))
"""


def children_of(pid: int) -> list[int]:
    return [child for child, state, ppid, _ in proc_stats() if ppid == pid and state not in "ZX"]


@real_cli
def test_a_session_dies_with_its_worker(fake, env):
    # A worker SIGKILLed mid-call (OOM killer, ray.kill) must not leave its CLI waiting
    # on the provider in a session of its own: PR_SET_PDEATHSIG, through setpriv.
    fake.default = Behaviour.hang()
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps({**env, "CLI": CLI})],
                              cwd=Path(__file__).resolve().parents[2])
    cli = None
    try:
        deadline = time.monotonic() + 30
        while not model_calls(fake):
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.05)
        [cli] = children_of(worker.pid)
        worker.kill()
        worker.wait(timeout=30)
        deadline = time.monotonic() + 5
        while alive_in_group(cli):
            assert time.monotonic() < deadline, "the CLI outlived its worker"
            time.sleep(0.05)
    finally:
        worker.kill()
        worker.wait()
        for pid in alive_in_group(cli) if cli else []:  # never leave an orphan behind
            os.kill(pid, signal.SIGKILL)
