"""Validation on every switch and the gate (issue 22, part 2), through the judge's core.

:class:`~ray_judge.pool.core.JudgeCore` with in-process workers sends real HTTP through
LiteLLM to the fake provider on 127.0.0.1, which answers as two models: ``openai/good``
scores the labelled cases as their labels say, ``openai/bad`` the other way round. No
Ray: only the metric instruments are stand-ins (they need a connected Ray worker).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from ray_judge.errors import ConfigError
from ray_judge.monitoring.status_view import read_status
from ray_judge.pool.core import JudgeCore
from ray_judge.selection.override_file import write_override
from ray_judge.spec import BackendSpec
from ray_judge.testing import Behaviour

from .test_judge_core import core_from_env

pytestmark = pytest.mark.usefixtures("provider_env")

GOOD, BAD = "litellm:openai/good", "litellm:openai/bad"


def reply(body: dict[str, Any]) -> str:
    text = json.dumps(body.get("messages"))
    right = "RIGHT-ANSWER" in text
    if "WRONG-ANSWER" not in text and not right:
        return "Fine.\nSCORE: 5"  # training traffic
    if body.get("model") == "bad":
        right = not right
    return f"Judged.\nSCORE: {9 if right else 1}"


def cases_file(tmp_path: Path, n: int = 6) -> Path:
    path = tmp_path / "cases.jsonl"
    lines = [json.dumps({"prompt": f"Question {i}?", "response": f"RIGHT-ANSWER {i}",
                         "pass": True}) for i in range(n)]
    lines += [json.dumps({"prompt": f"Question {i}?", "response": f"WRONG-ANSWER {i}",
                          "pass": False}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: Any) -> JudgeCore:
    env = {"LLM_JUDGE_MAX_ATTEMPTS": 1, "LLM_JUDGE_BACKOFF": 0, "LLM_JUDGE_NUM_WORKERS": 2,
           "LLM_JUDGE_RESERVOIR_SIZE": 0, "LLM_JUDGE_NAME": GOOD, "LLM_JUDGE_HEDGE": "off",
           "LLM_JUDGE_BACKEND_FILE": tmp_path / ".judge_backend",
           "LLM_JUDGE_VALIDATION_FILE": cases_file(tmp_path), **env}
    return core_from_env(tmp_path, monkeypatch, env)


async def settle(core: JudgeCore, backend: str, timeout_s: float = 20.0) -> dict[str, Any]:
    """The finished validation of ``backend`` (requests keep the dispatcher routing)."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        record = core.validation.latest.get(backend)
        if record is not None and record.state != "running":
            return record.as_dict()
        await core.score("keep routing", "5")
        await asyncio.sleep(0.05)
    raise AssertionError(f"no finished validation of {backend}: {core.validation!r}")


def switch(core: JudgeCore, tmp_path: Path, spec: str) -> None:
    write_override(tmp_path / ".judge_backend", BackendSpec.parse(spec))
    core.refresh_backend()


def test_every_switch_is_validated_with_the_previous_figures_beside(tmp_path, server,
                                                                     monkeypatch) -> None:
    server.reply = reply

    async def scenario():
        core = make_core(tmp_path, monkeypatch)
        try:
            start = await settle(core, GOOD)
            switch(core, tmp_path, BAD)
            served = await core.score("2+2?", "4")
            after = await settle(core, BAD)
            return start, served, after, core.status()
        finally:
            await core.aclose()

    start, served, after, status = asyncio.run(scenario())
    assert start["why"] == "start" and start["state"] == "done"  # no gate: report only
    assert start["metrics"]["accuracy"] == 1.0 and start["metrics"]["kappa"] == 1.0
    assert served.backend == BAD  # no gate: the switch happens at once
    assert after["why"] == "switch" and after["metrics"]["accuracy"] == 0.0
    validation = status["validation"]
    assert (validation["serving"], validation["previous"]) == (BAD, GOOD)
    assert set(validation["backends"]) == {GOOD, BAD}
    lines = read_status(status).validation
    assert lines[0].startswith(f"{BAD} (serving): done on 12 cases: ok 1, accuracy 0")
    assert lines[1].startswith(f"{GOOD} (previous): done on 12 cases: ok 1, accuracy 1")


def test_a_gated_switch_to_a_worse_judge_is_refused_and_the_old_one_serves(
        tmp_path, server, monkeypatch) -> None:
    server.reply = reply

    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_VALIDATION_GATE="accuracy>=0.8")
        try:
            await settle(core, GOOD)
            switch(core, tmp_path, BAD)
            held = await core.score("2+2?", "4")  # while BAD is validated
            await settle(core, BAD)
            after = [await core.score("2+2?", str(i)) for i in range(3)]
            return held, after, core.status()
        finally:
            await core.aclose()

    held, after, status = asyncio.run(scenario())
    assert held.backend == GOOD
    assert all(v.backend == GOOD for v in after)
    assert status["serving"] == GOOD and status["backend"] == BAD  # asked for, refused
    refused = status["validation"]["refused"]
    assert refused == (f"refused {BAD}: accuracy 0 < 0.8, short by 0.8 on 12 cases; "
                       f"serving {GOOD}")
    assert refused in read_status(status).validation


def test_a_gated_switch_to_a_judge_that_passes_happens_after_validation(
        tmp_path, server, monkeypatch) -> None:
    server.reply = reply

    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_NAME=BAD,
                         LLM_JUDGE_VALIDATION_GATE="accuracy>=0.8,ok>=1")
        try:
            await settle(core, BAD)
            switch(core, tmp_path, GOOD)
            held = await core.score("2+2?", "4")
            passed = await settle(core, GOOD)
            after = await core.score("2+2?", "5")
            return held, passed, after, core.status()
        finally:
            await core.aclose()

    held, passed, after, status = asyncio.run(scenario())
    assert held.backend == BAD and passed["state"] == "passed" and passed["why"] == "gate"
    assert after.backend == GOOD
    assert status["validation"]["refused"] is None
    assert [s["why"] for s in status["recent_switches"]] == ["switch"]


def test_a_failover_cannot_wait_it_serves_and_is_flagged(tmp_path, server,
                                                         monkeypatch) -> None:
    server.reply = reply

    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_FALLBACK=BAD,
                         LLM_JUDGE_VALIDATION_GATE="accuracy>=0.8")
        try:
            await settle(core, GOOD)
            server.script(Behaviour.error(401, "invalid x-api-key"))
            moved = await core.score("2+2?", "4")
            record = await settle(core, BAD)
            return moved, record, core.status()
        finally:
            await core.aclose()

    moved, record, status = asyncio.run(scenario())
    assert moved.ok and moved.backend == BAD
    assert record["why"] == "failover" and record["state"] == "failed"
    (flag,) = status["validation"]["flagged"]
    assert flag.startswith(f"{BAD} serves after a failover but failed validation: accuracy 0")
    assert f"WARNING: {flag}" in read_status(status).validation


def test_validation_waits_for_queued_training_requests(tmp_path, server, monkeypatch) -> None:
    """No case reaches the provider while training requests wait for a slot."""
    server.reply = reply
    server.latency_s = 0.1

    async def scenario():
        core = make_core(tmp_path, monkeypatch, LLM_JUDGE_MAX_IN_FLIGHT_LITELLM=2)
        try:
            await settle(core, GOOD)
            server.clear()
            burst = asyncio.ensure_future(core.score_batch(
                [{"prompt": "TRAINING-ITEM", "response": str(i)} for i in range(30)]))
            await asyncio.sleep(0.05)
            switch(core, tmp_path, BAD)  # the next round routes to BAD and validates it
            verdicts = await burst
            await settle(core, BAD)
            return verdicts
        finally:
            await core.aclose()

    verdicts = asyncio.run(scenario())
    assert all(v.ok for v in verdicts)
    seen = server.requests
    training = [r.at for r in seen if "TRAINING-ITEM" in json.dumps(r.body)]
    cases = [r.at for r in seen if "ANSWER" in json.dumps(r.body)]
    assert len(training) == 30 and len(cases) == 12
    # every case went out once the burst's last request had been dispatched
    assert min(cases) >= max(training) - 0.05


def test_a_bad_cases_file_or_gate_stops_the_judge_from_starting(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "response": "r"}\n')
    with pytest.raises(ConfigError, match=r"(?s)LLM_JUDGE_VALIDATION_FILE: .*line 1: a case "
                                          r"needs exactly one label"):
        make_core(tmp_path, monkeypatch, LLM_JUDGE_VALIDATION_FILE=bad)
    with pytest.raises(ConfigError, match="unknown metric 'spearmann'"):
        make_core(tmp_path, monkeypatch, LLM_JUDGE_VALIDATION_GATE="spearmann>=0.6")
    with pytest.raises(ConfigError, match="set LLM_JUDGE_VALIDATION_FILE too"):
        make_core(tmp_path, monkeypatch, LLM_JUDGE_VALIDATION_FILE=None,
                  LLM_JUDGE_VALIDATION_GATE="accuracy>=0.8")


def test_a_group_or_pair_call_that_fails_whole_is_a_failure_per_response(tmp_path):
    """The dispatcher's ``send_spare`` answers a group or pair call whose worker raised
    with a failed Verdict per response; validation counts each as failed instead of
    stopping."""
    from ray_judge.config import JudgeConfig
    from ray_judge.judging.catalog import JudgeCatalog
    from ray_judge.pool.dispatch import Dispatcher
    from ray_judge.quality.cases import parse_cases
    from ray_judge.quality.spare_judging import judge_on_spare

    catalog = JudgeCatalog.build(JudgeConfig(backend_file=tmp_path / ".judge_backend"))
    cases = parse_cases([json.dumps({"prompt": "q", "responses": ["a", "b", "c"],
                                     "ranking": [0, 1, 2]}),
                         json.dumps({"prompt": "q", "a": "x", "b": "y", "preferred": "a"})],
                        catalog)

    async def send(worker, spec, requests):
        raise RuntimeError("boom")

    async def scenario():
        dispatcher = Dispatcher(num_workers=1, send=send, route=lambda: BackendSpec.parse(GOOD),
                                limit_for=lambda spec: 4)
        return await judge_on_spare(cases, BackendSpec.parse(GOOD), catalog,
                                    dispatcher.send_spare, lanes=1)

    group, pair = asyncio.run(scenario())
    assert len(group) == 3 and all(not v.ok and "boom" in v.error for v in group)
    assert not pair.ok and pair.score is None
