"""Group and pairwise panels through the core and the real LiteLLM transport (issue 23).

As ``test_panels_core``: each member is a model of the fake provider whose ``reply`` hook
scores every response block it is shown from the response's own text, so a score that
lands on the wrong response (a member's shuffle not undone, chunks misaligned) shows.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from .test_panels_core import MEMBERS, A, B, C, X, make_core, score_of

pytestmark = pytest.mark.usefixtures("provider_env")

_BLOCK = re.compile(r"^<<<BEGIN RESPONSE (\w+)>>>\n(.*?)\n<<<END RESPONSE \1>>>$", re.S | re.M)


def _user_text(body: dict[str, Any]) -> str:
    parts = []
    for message in body["messages"]:
        content = message["content"]
        parts += [content] if isinstance(content, str) else [
            p.get("text", "") for p in content if isinstance(p, dict)]
    return "\n".join(parts)


def group_reply(body: dict[str, Any]) -> str:
    """A group judge's ``{"scores": [...]}`` in the order shown, or a pair's preference
    for the response shown first (0-10), each response scored by ``score_of``."""
    model = body["model"]
    blocks = dict(_BLOCK.findall(_user_text(body)))

    def score(text: str) -> int:
        return score_of(model, int(re.search(r"VALUE-(\d+)", text).group(1)))

    if set(blocks) == {"A", "B"}:
        return json.dumps({"preference": 5 + (score(blocks["A"]) - score(blocks["B"])) / 2})
    return json.dumps({"scores": [score(blocks[str(i)]) for i in range(1, len(blocks) + 1)]})


@pytest.fixture
def fake(server):
    server.reply = group_reply
    yield server
    server.reply = None


@pytest.fixture
def vllm(monkeypatch):
    from ray_judge.testing import FakeLLMServer

    with FakeLLMServer(reply=group_reply) as srv:
        monkeypatch.setenv("HOSTED_VLLM_API_BASE", f"{srv.url}/v1")
        yield srv


JUDGES = (f'[judges.gp]\nkind = "group"\npanel = {MEMBERS}\naggregate = "mean"\n'
          f'[judges.small]\nkind = "group"\npanel = {MEMBERS}\naggregate = "median"\n'
          f'max_group = 2\nescalate_to = "{X}"\nescalate_when = "spread > 0.7"\n'
          f'[judges.pp]\nkind = "pairwise"\npanel = {MEMBERS}\naggregate = "median"\n'
          f'[judges.pm]\nkind = "pairwise"\npanel = {MEMBERS}\naggregate = "mean"\n')


def test_a_group_panel_maps_every_members_scores_to_the_right_response(
        tmp_path, monkeypatch, fake, vllm):
    responses = ["VALUE-1", "VALUE-4", "VALUE-8"]

    async def scenario():
        core = make_core(tmp_path, monkeypatch, JUDGES)
        try:
            group = await core.score_group("Grade them.", responses, judge="gp")
            split = await core.score_group("Grade them.", responses, judge="small")
            batch = await core.score_batch([{"prompt": "Grade them.", "judge": "gp",
                                             "responses": responses[::-1]}])
            return group, split, batch, core.status()["panels"]
        finally:
            await core.aclose()

    group, split, batch, panels = asyncio.run(scenario())
    # a: 1, 4, 8; b: 3, 6, 10; c: 9, 6, 2 (out of 10)
    assert [v.score for v in group] == pytest.approx([13 / 30, 16 / 30, 20 / 30])
    assert [[round(m["score"], 6) for m in v.extra["panel"]] for v in group] == [
        [0.1, 0.3, 0.9], [0.4, 0.6, 0.6], [0.8, 1.0, 0.2]]
    assert [v.extra["position"] for v in group] == [0, 1, 2]
    assert [m["backend"] for m in group[0].extra["panel"]] == [A, B, C]
    assert [v.score for v in batch[0]] == pytest.approx([20 / 30, 16 / 30, 13 / 30])
    # split in chunks of two sharing an anchor; spreads 0.8, 0.2, 0.8 > 0.7: the
    # escalation backend (9 for everything) judges the whole group and decides
    assert all(v.extra["escalated"] for v in split)
    assert [v.score for v in split] == pytest.approx([0.9, 0.9, 0.9])
    assert panels["gp"]["verdicts"] == 6 and panels["small"]["escalated"] == 3
    # one call per member per group: three members, two groups of gp
    assert panels["gp"]["calls"] == {A: 2, B: 2, C: 2}
    # each member saw the first group in an order of its own
    orders = {}
    for r in [*fake.requests, *vllm.requests]:
        text = _user_text(r.body)
        if "Grade them." in text and len(_BLOCK.findall(text)) == 3:
            orders.setdefault(r.body["model"], [re.search(r"VALUE-\d+", t).group(0)
                                                for _, t in _BLOCK.findall(text)])
    assert len(orders) == 3 and len({tuple(o) for o in orders.values()}) > 1, orders


def test_a_pairwise_panel_combines_each_members_preference(tmp_path, monkeypatch, fake,
                                                           vllm):
    async def scenario():
        core = make_core(tmp_path, monkeypatch, JUDGES)
        try:
            median = await core.compare("Which is better?", "VALUE-8", "VALUE-2", judge="pp")
            mean = await core.compare("Which is better?", "VALUE-8", "VALUE-2", judge="pm")
            flipped = await core.compare("Which is better?", "VALUE-2", "VALUE-8", judge="pm")
            return median, mean, flipped
        finally:
            await core.aclose()

    median, mean, flipped = asyncio.run(scenario())
    # a: 8 vs 2 -> 0.8; b: 10 vs 4 -> 0.8; c: 2 vs 8 -> 0.2 (both orders agree)
    assert [m["score"] for m in median.extra["panel"]] == pytest.approx([0.8, 0.8, 0.2])
    assert median.score == pytest.approx(0.8) and mean.score == pytest.approx(0.6)
    assert flipped.score == pytest.approx(0.4)
    assert median.attempts == 6  # three members, both orders each
