"""Judge panels through the judge's core and the real LiteLLM transport (issue 23).

:class:`~ray_judge.pool.core.JudgeCore` with in-process workers sends real HTTP requests
to the fake providers on 127.0.0.1. Each member is a different model name, and the fake's
``reply`` hook answers with a score that is a known function of the model and of the
``VALUE-n`` marker in the response, so every aggregate is computed by hand here. A second
fake server stands behind the ``hosted_vllm`` member so that its failures can be scripted
without touching the others. No Ray: only the metric instruments are stand-ins.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ray_judge.cli import app
from ray_judge.cli.status_text import format_live_status
from ray_judge.pool.core import JudgeCore
from ray_judge.quality.cases import parse_cases
from ray_judge.quality.metrics import summarize
from ray_judge.quality.run import PANEL, judge_cases
from ray_judge.selection.override_file import write_override
from ray_judge.spec import BackendSpec
from ray_judge.testing import Behaviour, FakeLLMServer

from .test_judge_core import core_from_env

pytestmark = pytest.mark.usefixtures("provider_env")

A, B, C = "litellm:openai/gpt-4o-mini", "litellm:openai/gpt-4o", "litellm:hosted_vllm/judge-c"
X = "litellm:openai/gpt-4.1"  # the escalation backend
MEMBERS = json.dumps([A, B, C])


def score_of(model: str, n: int) -> int:
    """The SCORE (0-10) each model gives a response marked VALUE-n."""
    return {"gpt-4o-mini": n, "gpt-4o": min(10, n + 2), "judge-c": 10 - n,
            "gpt-4.1": 9, "gpt-4.1-mini": 0}[model.rsplit("/", 1)[-1]]


def reply(body: dict[str, Any]) -> str:
    n = int(re.search(r"VALUE-(\d+)", json.dumps(body["messages"])).group(1))
    return f"Judged.\nSCORE: {score_of(body['model'], n)}"


@pytest.fixture
def vllm(monkeypatch):
    """The fake behind the hosted_vllm member (judge-c), apart from the others."""
    with FakeLLMServer(reply=reply) as srv:
        monkeypatch.setenv("HOSTED_VLLM_API_BASE", f"{srv.url}/v1")
        yield srv


@pytest.fixture
def fake(server):
    server.reply = reply
    yield server
    server.reply = None


def make_core(tmp_path: Path, monkeypatch, judges: str, **env: Any) -> JudgeCore:
    path = tmp_path / "judges.toml"
    path.write_text(judges)
    env = {"LLM_JUDGE_MAX_ATTEMPTS": 1, "LLM_JUDGE_BACKOFF": 0, "LLM_JUDGE_NUM_WORKERS": 2,
           "LLM_JUDGE_SHIFT_SHARE": 1, "LLM_JUDGE_RESERVOIR_SIZE": 0, "LLM_JUDGE_NAME": A,
           "LLM_JUDGE_JUDGES_FILE": path,
           "LLM_JUDGE_BACKEND_FILE": tmp_path / ".judge_backend", **env}
    return core_from_env(tmp_path, monkeypatch, env)


def calls_to(*servers: FakeLLMServer, model: str) -> int:
    return sum(1 for s in servers for r in s.requests
               if r.body is not None and r.body.get("model") == model)


PANELS = "".join(f'[judges.{how}]\npanel = {MEMBERS}\naggregate = "{how}"\n'
                 for how in ("mean", "median", "majority"))


def test_mean_median_and_majority_of_three_members(tmp_path, monkeypatch, fake, vllm):
    fake.latency_s = vllm.latency_s = 0.3
    walls: list[float] = []

    async def scenario():
        core = make_core(tmp_path, monkeypatch, PANELS)
        try:
            items = [{"prompt": "Grade it.", "response": f"VALUE-{n}", "judge": how}
                     for how in ("mean", "median", "majority") for n in (1, 4)]
            batch = await core.score_batch(items)
            started = time.perf_counter()
            alone = await core.score("Grade it.", "VALUE-7", judge="mean")
            walls.append(time.perf_counter() - started)
            return batch, alone, core.status()["panels"]
        finally:
            await core.aclose()

    verdicts, alone, panels = asyncio.run(scenario())
    # VALUE-1: 1, 3, 9; VALUE-4: 4, 6, 6 (out of 10)
    expected = [13 / 30, 16 / 30, 0.3, 0.6, 0.1, 0.6]  # majority of 1, 3, 9: a tie, lowest
    assert [v.score for v in verdicts] == pytest.approx(expected)
    first = verdicts[0]
    assert first.ok and first.judge == "mean" and first.backend == "panel:mean"
    assert [(m["member"], m["backend"], m["score"], m["status"])
            for m in first.extra["panel"]] == [
        (A, A, 0.1, "ok"), (B, B, 0.3, "ok"), (C, C, 0.9, "ok")]
    assert {m["model"] for m in first.extra["panel"]} == {"gpt-4o-mini", "gpt-4o", "judge-c"}
    assert all(m["cost_usd"] is not None and m["latency_s"] >= 0.3
               for m in first.extra["panel"][:2])
    assert first.attempts == 3 and first.extra["spread"] == pytest.approx(0.8)
    assert first.cost_usd == pytest.approx(sum(m["cost_usd"] or 0
                                               for m in first.extra["panel"]))
    # concurrent members: the panel takes its slowest member's time, not the sum (each
    # member call takes the fake's 0.3 s at least: three in a row would take 0.9 s)
    assert alone.latency_s == pytest.approx(max(m["latency_s"] for m in alone.extra["panel"]),
                                            abs=1e-4)
    assert min(m["latency_s"] for m in alone.extra["panel"]) >= 0.3
    assert walls[0] < sum(m["latency_s"] for m in alone.extra["panel"])
    assert "escalated" not in first.extra  # no escalation configured
    # one call per member, request and panel (a judge's name is part of its cache key)
    assert fake.model_calls + vllm.model_calls == 18 + 3
    assert panels["mean"]["members"] == [A, B, C] and panels["mean"]["verdicts"] == 3


def test_a_failing_member_is_reported_then_the_quorum_fails(tmp_path, monkeypatch, fake,
                                                            vllm):
    async def scenario():
        core = make_core(tmp_path, monkeypatch, f"[judges.p]\npanel = {MEMBERS}\n"
                         'aggregate = "mean"\nmin_members = 2\n')
        try:
            vllm.script(Behaviour.error(429, "slow down", retry_after=7))
            limited = await core.score("Grade it.", "VALUE-4", judge="p")
            vllm.script(Behaviour.usage_limit(2_000_000_000))
            fake.script(Behaviour.error(429, "slow down", retry_after=3))
            failed = await core.score("Grade it.", "VALUE-2", judge="p")
            return limited, failed, core.status()["panels"]["p"]
        finally:
            await core.aclose()

    limited, failed, status = asyncio.run(scenario())
    assert limited.ok and limited.score == pytest.approx(0.5)  # (4 + 6) / 20: C left out
    assert limited.extra["members_ok"] == 2 and limited.extra["members"] == 3
    entry = limited.extra["panel"][2]
    assert (entry["member"], entry["status"], entry["score"]) == (C, "rate_limited", None)
    assert "slow down" in entry["error"]
    assert not failed.ok and failed.score is None
    assert failed.status.value in ("rate_limited", "usage_limited")
    assert "1 of 3 members ok, fewer than min_members = 2" in failed.error
    assert C in failed.error and "usage_limited" in failed.error
    assert failed.retry_after == 3
    assert [m["status"] for m in failed.extra["panel"]].count("ok") == 1
    assert (status["verdicts"], status["failed"]) == (2, 1)


ESCALATING = (f"[judges.p]\npanel = {MEMBERS}\naggregate = \"median\"\n"
              f'escalate_to = "{X}"\nescalate_when = "spread > 0.3"\n'
              f"[judges.j]\npanel = {MEMBERS}\naggregate = \"median\"\n"
              f'escalate_to = "{X}"\nescalate_when = "spread > 0.3"\nescalation = "joins"\n')


def test_escalation_fires_exactly_when_the_spread_exceeds_the_threshold(
        tmp_path, monkeypatch, fake, vllm):
    # VALUE-n: n, n+2, 10-n. Spread (on [0, 1]) for n = 4: 0.2, n = 5: 0.2 (5, 7, 5),
    # n = 6: 0.4 (6, 8, 4), n = 3: 0.4 (3, 5, 7), n = 2: 0.6; X always says 9.
    values = [4, 5, 6, 3, 2]
    escalations = []

    async def scenario():
        core = make_core(tmp_path, monkeypatch, ESCALATING)
        try:
            decided = [await core.score("Grade it.", f"VALUE-{n}", judge="p") for n in values]
            escalations.append(calls_to(fake, model="gpt-4.1"))
            joined = await core.score("Grade it.", "VALUE-6", judge="j")
            return decided, joined, core.status(), core.metrics.panels
        finally:
            await core.aclose()

    decided, joined, status, metrics = asyncio.run(scenario())
    panels = status["panels"]
    assert [v.extra["escalated"] for v in decided] == [False, False, True, True, True]
    assert escalations == [3]  # once per escalated request, never otherwise
    assert [v.score for v in decided] == pytest.approx([0.6, 0.5, 0.9, 0.9, 0.9])
    assert decided[2].extra["escalation"]["backend"] == X
    assert decided[2].extra["escalation"]["role"] == "decides"
    assert decided[2].attempts == 4
    # joins: median of 6, 8, 4 and 9 -> 7
    assert joined.extra["escalated"] and joined.score == pytest.approx(0.7)
    assert joined.extra["escalation"]["role"] == "joins"
    assert calls_to(fake, model="gpt-4.1") == 4
    assert panels["p"]["escalated"] == 3 and panels["p"]["escalation_rate"] == 0.6
    assert panels["p"]["calls"]["escalation"] == 3
    assert sum(panels["p"]["call_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert panels["p"]["agreement"]["n"] == 5
    # B is A + 2 (capped), C is 10 - A: rho(A, B) = 1, rho(A, C) = -1
    assert panels["p"]["agreement"]["spearman"][f"{A} ~ {B}"] == 1.0
    assert panels["p"]["agreement"]["spearman"][f"{A} ~ {C}"] == -1.0
    escalated = [tags["escalated"] for _, tags in metrics.verdicts.points
                 if tags["judge"] == "p"]
    assert escalated == ["false", "false", "true", "true", "true"]
    assert sum(n for n, tags in metrics.calls.points
               if tags == {"judge": "p", "member": "escalation"}) == 3
    assert {tags["statistic"] for _, tags in metrics.agreement.points} >= {"mean_spearman"}
    text = format_live_status(status)
    assert "panel:    p: 5 verdicts, 0 failed, escalated 3 (60.0%); alpha " in text
    assert "escalation calls 17% cost " in text  # 3 of 5 * 3 + 3 calls


def test_current_follows_a_switch_and_no_old_panel_verdict_is_served(
        tmp_path, monkeypatch, fake, vllm):
    judges = f'[judges.p]\npanel = ["@current", "{B}"]\naggregate = "mean"\n'

    async def scenario():
        core = make_core(tmp_path, monkeypatch, judges)
        try:
            before = await core.score("Grade it.", "VALUE-4", judge="p")
            again = await core.score("Grade it.", "VALUE-4", judge="p")
            write_override(core.config.backend_file,
                           BackendSpec.parse("litellm:openai/gpt-4.1-mini"))
            core.refresh_backend()
            after = await core.score("Grade it.", "VALUE-4", judge="p")
            return before, again, after
        finally:
            await core.aclose()

    before, again, after = asyncio.run(scenario())
    assert before.extra["panel"][0]["backend"] == A and before.score == pytest.approx(0.5)
    assert again.cached and again.score == before.score
    assert after.extra["panel"][0]["member"] == "@current"
    assert after.extra["panel"][0]["backend"] == "litellm:openai/gpt-4.1-mini"
    assert not after.cached and after.extra["panel"][1]["cached"]  # B's verdict stands
    assert after.score == pytest.approx(0.3)  # (0 + 6) / 20
    assert calls_to(fake, model="gpt-4.1-mini") == 1


def test_a_pinned_request_of_a_panel_judge_asks_that_backend_alone(
        tmp_path, monkeypatch, fake, vllm):
    async def scenario():
        core = make_core(tmp_path, monkeypatch, f"[judges.p]\npanel = {MEMBERS}\n")
        try:
            return await core.score("Grade it.", "VALUE-4", judge="p", backend=B)
        finally:
            await core.aclose()

    verdict = asyncio.run(scenario())
    assert verdict.ok and verdict.backend == B and "panel" not in verdict.extra
    assert verdict.score == pytest.approx(0.6) and fake.model_calls == 1


def test_the_current_member_fails_over_like_the_serving_backend(tmp_path, monkeypatch, fake,
                                                               vllm):
    """The serving backend (judge-c, behind its own fake) hits its usage limit: the
    ``@current`` member is answered by the fallback, as training traffic would be, while a
    pinned member is never rerouted."""
    judges = f'[judges.p]\npanel = ["@current", "{A}"]\naggregate = "mean"\n'

    async def scenario():
        core = make_core(tmp_path, monkeypatch, judges, LLM_JUDGE_NAME=C,
                         LLM_JUDGE_FALLBACK="litellm:openai/gpt-4.1-mini")
        try:
            vllm.script(Behaviour.usage_limit(2_000_000_000))
            return await core.score("Grade it.", "VALUE-4", judge="p")
        finally:
            await core.aclose()

    verdict = asyncio.run(scenario())
    current, pinned = verdict.extra["panel"]
    assert current["backend"] == "litellm:openai/gpt-4.1-mini" and current["score"] == 0.0
    assert pinned["backend"] == A and pinned["score"] == pytest.approx(0.4)
    assert verdict.ok and verdict.score == pytest.approx(0.2)
    assert calls_to(vllm, model="judge-c") == 1  # tried once, then the fallback served


def test_an_eval_of_a_panel_judge_shows_the_panel_beside_its_members(
        tmp_path, monkeypatch, fake, vllm):
    """``ray-judge eval``'s default for a panel judge's cases: the panel's column and one
    per member, the members' read from the panel's own verdicts (no call of their own)."""
    labels = [{"prompt": "Grade it.", "response": f"VALUE-{n}", "judge": "p", "label": n}
              for n in (4, 5, 6, 3, 2)]

    lanes = []

    async def scenario():
        core = make_core(tmp_path, monkeypatch, ESCALATING)
        try:
            await core.score("Grade it.", "VALUE-1")  # training traffic: A serves
            lanes.append(set(core.dispatcher.lanes.pinned))
            cases = parse_cases([json.dumps(x) for x in labels], core.judges_catalog)
            plan = core.judges_catalog.get("p").panel_plan
            results = await judge_cases(core, cases, [PANEL], panels={"p": plan.labels},
                                        serving=A)
            lanes.append(set(core.dispatcher.lanes.pinned))
            # B judged on its own too: the member column read from the panel is named apart
            again = await judge_cases(core, cases, [B, PANEL], panels={"p": plan.labels},
                                      serving=A)
            lanes.append(list(again))
            calls = fake.model_calls + vllm.model_calls
            with pytest.raises(ValueError, match="judge 'default' is not one"):
                await core.score_batch([
                    {"prompt": "Grade it.", "response": "VALUE-9", "judge": "p",
                     "backend": PANEL},
                    {"prompt": "Grade it.", "response": "VALUE-9", "backend": PANEL}])
            await asyncio.sleep(0.2)
            lanes.append(fake.model_calls + vllm.model_calls - calls)  # none started
            with pytest.raises(ValueError, match=r"backend='@panel' is for the requests of "
                                                 r"panel judges; judge 'default' is not one"):
                await core.score("Grade it.", "VALUE-1", backend=PANEL)
            await core.score("Grade it.", "VALUE-7", judge="p")  # a caller's panel reward
            lanes.append(core.status())
            return results
        finally:
            await core.aclose()

    results = asyncio.run(scenario())
    # every member in a lane of its own, @current too: the eval never queues in the main
    # lane ahead of training requests
    assert lanes[0] == set() and lanes[1] == {BackendSpec.parse(m) for m in (A, B, C, X)}
    assert lanes[2] == [B, PANEL, A, f"{B} (in {PANEL})", C] and lanes[3] == 0
    # a caller's panel verdicts feed length bias under the panel's name and the panel's
    # window; the eval's do neither
    assert lanes[4]["length_bias"]["p"]["panel:p"]["n"] == 1
    assert set(lanes[4]["length_bias"]["p"]) == {"panel:p"}
    assert lanes[4]["panels"]["p"]["verdicts"] == 1
    assert list(results) == [PANEL, A, B, C]
    figures = {name: summarize(judged) for name, judged in results.items()}
    got = {name: [j.got for j in judged] for name, judged in results.items()}
    assert got[A] == [4, 5, 6, 3, 2]
    assert got[B] == [6, 7, 8, 5, 4]
    assert got[C] == [6, 5, 4, 7, 8]
    assert got[PANEL] == pytest.approx([6, 5, 9, 9, 9])  # as in the escalation test above
    assert figures[A]["mae"] == 0 and figures[B]["mae"] == 2
    assert figures[C]["mae"] == pytest.approx((2 + 0 + 2 + 4 + 6) / 5)
    assert figures[PANEL]["escalated"] == pytest.approx(0.6)
    assert all(figures[m]["escalated"] is None for m in (A, B, C))
    # every call was the panel's: 3 members x 5 cases and 3 escalations, none again (and
    # the training request, and the caller's panel request: 3 members and an escalation)
    assert fake.model_calls + vllm.model_calls == 18 + 1 + 4
    members_cost = sum(figures[m]["cost_usd"] for m in (A, B, C))
    assert 0 < members_cost < figures[PANEL]["cost_usd"]  # the escalations cost the rest
    assert all(figures[m]["tokens"] > 0 and figures[m]["latency_p50_s"] is not None
               for m in (A, B, C))


def test_ray_judge_eval_of_a_panel_judge_through_the_command(tmp_path, monkeypatch, fake,
                                                           vllm):
    """The command, with no cluster to find: a judge in this process, the panel's column
    first, a column per member (``@current`` named with the backend it stood for)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))
    monkeypatch.setenv("LLM_JUDGE_BACKEND_FILE", str(tmp_path / ".judge_backend"))
    monkeypatch.setenv("LLM_JUDGE_NAME", A)
    judges = tmp_path / "judges.toml"
    judges.write_text(f'[judges.p]\npanel = ["@current", "{B}", "{C}"]\naggregate = "median"\n')
    monkeypatch.setenv("LLM_JUDGE_JUDGES_FILE", str(judges))
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"prompt": "Grade it.", "response": f"VALUE-{n}",
                                         "range": [n - 1, n + 1]}) + "\n" for n in range(1, 9)))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(app, ["eval", str(cases), "--judge", "p", "--json", str(out),
                                      "--min", "in_range=0.9"])
    assert result.exit_code == 1, result.output
    assert "on @panel with a judge in this process" in result.stderr
    assert "@panel" in result.stdout and "Worst cases on @panel:" in result.stdout
    figures = json.loads(out.read_text())["backends"]
    assert list(figures) == [PANEL, f"@current ({A})", B, C]
    # n is faithful; n + 2 always out of [n - 1, n + 1]; 10 - n in it for n = 5 only; the
    # median of the three is n + 2 for n <= 4 and n from 5 on
    assert [figures[name]["in_range"] for name in figures] == [0.5, 1.0, 0.0, 0.125]
    missed = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert missed == [f"FAILED --min: {PANEL}: in_range 0.5 < 0.9, short by 0.4",
                      f"FAILED --min: {B}: in_range 0 < 0.9, short by 0.9",
                      f"FAILED --min: {C}: in_range 0.125 < 0.9, short by 0.775"], missed
    assert fake.model_calls + vllm.model_calls == 8 * 3
    missing = CliRunner().invoke(app, ["eval", str(cases), "--backend", PANEL])
    assert missing.exit_code == 1
    assert "--backend @panel: no case names a panel judge (they name default)" in missing.stderr
    no_panel = CliRunner().invoke(app, ["eval", str(cases), "--min", "escalated=0.5"])
    assert no_panel.exit_code == 1
    assert ("--min: escalated is a panel's figure and no case names a panel judge"
            in no_panel.stderr)
