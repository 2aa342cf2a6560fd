"""Hedged calls on the real Claude Code CLI (issue 27), one-shot and session modes.

The CLI talks to the fake Anthropic API, which makes the first call of a chosen request
slow; the hedge (a second ``claude`` process) answers, and the slow process's group is
killed as a timeout kills it: no orphan process, no zombie, no session left behind. The
permits are a stand-in that always says yes (the judge's side has its own tests).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ray_judge.backends.ccode import ClaudeCodeBackend
from ray_judge.backends.ccode_session import ClaudeCodeSessionBackend
from ray_judge.config import JudgeConfig
from ray_judge.judging.hedging import Hedger, HedgeReport
from ray_judge.judging.runner import JudgeRunner
from ray_judge.spec import BackendSpec
from ray_judge.verdict import JudgeRequest
from tests.ccode_support import assert_group_gone, model_calls, real_cli, recording_spawn
from tests.cli_support import CLI


class YesPermits:
    def __init__(self) -> None:
        self.reports: list[HedgeReport] = []

    async def acquire(self, spec: str) -> bool:
        return True

    def release(self, report: HedgeReport) -> None:
        self.reports.append(report)


@real_cli
@pytest.mark.parametrize("kind", [ClaudeCodeBackend, ClaudeCodeSessionBackend],
                         ids=["oneshot", "session"])
def test_the_hedge_wins_and_the_slow_claude_process_is_ended(fake, env, kind) -> None:
    config = JudgeConfig(claude_cli_path=CLI, timeout_s=90.0, deadline_s=120.0,
                         max_attempts=1, ccode_sessions=2, hedge_after_s=4.0)
    pids: list[int] = []
    backend = kind(BackendSpec.ccode("ccode-4-sonnet"), config, environ=env,
                   spawn=recording_spawn(pids))
    permits = YesPermits()
    fake.slow("SLOW-CLI-CALL", 80.0)

    async def scenario():
        try:
            runner = JudgeRunner(backend, hedger=Hedger(config, permits))
            verdict = await asyncio.wait_for(
                runner.judge(JudgeRequest("What is 2+2?", "4 SLOW-CLI-CALL")), 60)
            live: list[int] = []
            if kind is ClaudeCodeSessionBackend:  # the loser's session is reaped meanwhile
                give_up = time.monotonic() + 10
                while len(backend.pids) > 1 and time.monotonic() < give_up:
                    await asyncio.sleep(0.05)
                live = list(backend.pids)
            return verdict, live
        finally:
            await backend.aclose()

    verdict, live = asyncio.run(scenario())
    assert verdict.ok and verdict.extra["hedged"]["winner"] == "hedge", verdict
    assert verdict.attempts == 2
    assert len(pids) == 2  # the slow process and its hedge
    assert len(model_calls(fake)) == 2
    assert_group_gone(pids[0])  # killed with its whole group when the hedge won
    if kind is ClaudeCodeSessionBackend:
        assert live == [pids[1]]  # the winner's session stayed to serve; the loser's is gone
    assert_group_gone(pids[1])  # and aclose ended the rest
    give_up = time.monotonic() + 10
    while fake.abandoned < 1 and time.monotonic() < give_up:
        time.sleep(0.05)
    assert fake.abandoned == 1  # the killed CLI's request was closed at the provider
    assert [r.winner for r in permits.reports] == ["hedge"]
