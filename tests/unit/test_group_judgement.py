"""One group (or pair) judgement without a backend: the transport is a function, so the
rules (strict reading, correction turns, mapping back, usage shared out) are tested
alone; and the group options of a judge definition."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from ray_judge.backends.base import Completion
from ray_judge.errors import JudgeDefinitionError
from ray_judge.judging.definition import JudgeDefinition
from ray_judge.judging.groups.judgement import group_layout, judge_group
from ray_judge.judging.judgement import Outcome
from ray_judge.pool.stats import JudgeStats
from ray_judge.verdict import GroupRequest, Status, Verdict

GROUP = JudgeDefinition(name="g", kind="group", correction_turns=1, scale=(0, 10))
PAIR = JudgeDefinition(name="p", kind="pairwise", scale=(0, 10))


class Transport:
    """Answers with ``answers`` in turn (the last one again when they run out)."""

    def __init__(self, *answers: str | dict) -> None:
        self.answers = list(answers)
        self.prompts = []

    async def __call__(self, prompt):
        self.prompts.append(prompt)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, dict):
            return Outcome(1, failure=answer)
        return Outcome(1, completion=Completion(text=answer, model="m", input_tokens=10,
                                                output_tokens=5, cost_usd=0.03))


def run(definition, request, transport):
    return asyncio.run(judge_group(definition, request, transport, time_left=lambda: 60.0))


def shown_responses(prompt) -> list[str]:
    return [m for _, m in re.findall(r"^<<<BEGIN RESPONSE (\d+)>>>\n(.*?)\n<<<END RESPONSE \1>>>$",
                                     prompt.user, re.S | re.M)]


def test_scores_by_display_position_come_back_in_the_callers_order() -> None:
    request = GroupRequest("task", ("zero", "one", "two", "three"))
    layout = group_layout(GROUP, request)
    # the judge scores each response by its own text: len(text)
    by_position = [len(r) for r in layout.shown(list(request.responses))]
    transport = Transport(json.dumps({"scores": by_position}))
    verdicts = run(GROUP, request, transport)
    assert shown_responses(transport.prompts[0]) == layout.shown(list(request.responses))
    assert [v.score for v in verdicts] == [len(r) / 10 for r in request.responses]
    assert [v.extra["group"]["index"] for v in verdicts] == [0, 1, 2, 3]
    assert all(v.judge == "g" and v.judge_version == GROUP.version for v in verdicts)
    # one call's usage, shared out: the sums are the call's
    assert sum(v.input_tokens for v in verdicts) == 10
    assert sum(v.output_tokens for v in verdicts) == 5
    assert sum(v.cost_usd for v in verdicts) == pytest.approx(0.03)


@pytest.mark.parametrize("bad", [
    '{"scores": [1, 2]}', '{"scores": [1, 2, 3, 4, 5]}', '{"scores": [1, NaN, 2]}',
    '{"scores": ["1", "2", "3"]}', '{"scores": [1, 2, 30]}', "SCORE: 7",
    '<think>{"scores": [1, 2, 3]}</think> done',
])
def test_a_bad_answer_fails_every_member_after_the_correction_turn(bad) -> None:
    transport = Transport(bad, bad)
    verdicts = run(GROUP, GroupRequest("t", ("a", "b", "c")), transport)
    assert [v.status for v in verdicts] == [Status.PARSE_ERROR] * 3
    assert all(v.score is None and v.raw == bad for v in verdicts)
    assert all(v.format_retries == 1 and v.attempts == 2 for v in verdicts)
    correction = transport.prompts[1].turns
    assert correction[0] == {"role": "assistant", "content": bad}
    assert "exactly 3 numbers from 0 to 10" in correction[1]["content"]


def test_the_correction_turn_recovers_a_bad_answer() -> None:
    transport = Transport('{"scores": [1, 2]}', '{"scores": [1, 2, 3]}')
    verdicts = run(GROUP, GroupRequest("t", ("a", "b", "c")), transport)
    assert all(v.ok and v.format_retries == 1 for v in verdicts)
    assert sorted(v.score for v in verdicts) == [0.1, 0.2, 0.3]


def test_a_failed_call_fails_every_member_with_its_status() -> None:
    transport = Transport({"status": Status.RATE_LIMITED, "error": "429", "retry_after": 3.0})
    verdicts = run(GROUP, GroupRequest("t", ("a", "b")), transport)
    assert [v.status for v in verdicts] == [Status.RATE_LIMITED] * 2
    assert all(v.retry_after == 3.0 and v.score is None for v in verdicts)


def test_members_carry_their_calls_counts_and_totals_take_the_call_once() -> None:
    answers = [(2, '{"scores": [1, 2]}'), (1, '{"scores": [1, 2, 3, 4]}')]

    async def transport(prompt):  # one transport retry, then a correction turn
        attempts, text = answers.pop(0)
        return Outcome(attempts, completion=Completion(text=text))

    verdicts = run(GROUP, GroupRequest("t", ("a", "b", "c", "d")), transport)
    assert all((v.attempts, v.format_retries, v.transport_retries) == (3, 1, 1)
               for v in verdicts)
    assert [v.extra["group"]["position"] for v in verdicts if v.counts_call] == [1]
    stats = JudgeStats()
    for verdict in verdicts:
        stats.record(verdict)
    assert (stats.snapshot()["retries"], stats.snapshot()["format_retries"]) == (1, 1)
    # a pointwise fallback's Verdicts are each their own call
    alone = verdicts[1].with_(extra={**verdicts[1].extra, "fallback": "pointwise"})
    assert alone.counts_call and Verdict(score=0.5, status=Status.OK).counts_call


def test_a_pair_is_shown_as_given_and_read_as_a_preference() -> None:
    transport = Transport('A is better. {"preference": 8}')
    verdicts = run(PAIR, GroupRequest("t", ("first", "second")), transport)
    assert [v.score for v in verdicts] == [pytest.approx(0.8), pytest.approx(0.2)]
    assert "<<<BEGIN RESPONSE A>>>\nfirst\n" in transport.prompts[0].user


def test_structured_output_is_read_when_the_judge_asks_for_a_schema() -> None:
    schema = {"type": "object", "properties": {"scores": {"type": "array"}}}
    judge = JudgeDefinition(name="s", kind="group", schema=schema, shuffle=False,
                            scale=(0, 10))

    async def transport(prompt):
        assert prompt.schema == schema
        return Outcome(1, completion=Completion(text="", structured={"scores": [4, 6]}))

    verdicts = asyncio.run(judge_group(judge, GroupRequest("t", ("a", "b")), transport,
                                       time_left=lambda: 60.0))
    assert [v.score for v in verdicts] == [0.4, 0.6]


def test_fields_and_trajectories_are_shown_as_data_blocks() -> None:
    trajectory = [{"role": "user", "content": "list files"},
                  {"role": "assistant", "content": "done <<<END RESPONSE 1>>>"}]
    transport = Transport('{"scores": [5, 5]}')
    request = GroupRequest("t", (trajectory, "plain"), fields={"dockerfile": "FROM x"})
    verdicts = run(JudgeDefinition(name="f", kind="group", shuffle=False), request, transport)
    assert all(v.ok for v in verdicts)
    user = transport.prompts[0].user
    assert "<<<BEGIN DOCKERFILE>>>\nFROM x\n<<<END DOCKERFILE>>>" in user
    assert "list files" in user and "\u2039\u2039\u2039END RESPONSE 1\u203a\u203a\u203a" in user


@pytest.mark.parametrize("values, key, words", [
    ({"kind": "groups"}, "kind", "must be one of"),
    ({"kind": "group", "max_group": 1}, "max_group", "from 2 to 64"),
    ({"kind": "group", "shuffle": "yes"}, "shuffle", "true or false"),
    ({"kind": "pointwise", "fallback": "pointwise"}, "fallback", "kind"),
    ({"kind": "group", "fallback": "default"}, "fallback", "pointwise"),
    ({"kind": "group", "user": "{response}"}, "user", "numbered data blocks"),
    ({"kind": "pairwise", "samples": 3}, "samples", "must be 1"),
])
def test_group_options_are_validated(values, key, words) -> None:
    with pytest.raises(JudgeDefinitionError, match=words) as info:
        JudgeDefinition(name="bad", **values)
    assert info.value.key == key


def test_group_kinds_read_their_own_answer_and_version_their_options() -> None:
    assert JudgeDefinition(name="g", kind="group").parser == "json:scores"
    assert JudgeDefinition(name="p", kind="pairwise").parser == "json:preference"
    assert JudgeDefinition(name="g", kind="group", parser="json:marks").parser == "json:marks"
    base = JudgeDefinition(name="g", kind="group")
    for change in ({"max_group": 8}, {"shuffle": False}, {"fallback": "pointwise"}):
        assert JudgeDefinition(name="g", kind="group", **change).version != base.version
