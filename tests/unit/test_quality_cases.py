"""Reading a labelled cases file: the shipped sets read, and a bad file is refused whole,
each problem naming its line, the field and the bad value."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from ray_judge.config import JudgeConfig
from ray_judge.judging.catalog import JudgeCatalog
from ray_judge.quality.cases import CasesError, read_cases

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "eval"
CATALOG = JudgeCatalog.build(JudgeConfig(judges_file=REPO / "examples/judges/judges.toml"))


def test_the_terminal_agent_set_reads_with_a_range_and_a_why_per_case():
    cases = read_cases(EXAMPLES / "terminal_agent.jsonl", CATALOG)
    assert len(cases) >= 12
    assert {c.judge for c in cases} == {"terminal_agent"}
    assert {c.label for c in cases} == {"range"}
    assert all(c.why and c.why.endswith(".") for c in cases)
    assert all(c.scale == (0.0, 1.0) and c.item["fields"]["dockerfile"] for c in cases)
    assert len({c.id for c in cases}) == len(cases)


def test_the_default_judge_set_reads_with_pass_labels_and_hacking_attempts():
    cases = read_cases(EXAMPLES / "default_judge.jsonl", CATALOG)
    assert len(cases) >= 20
    assert {c.label for c in cases} == {"pass"} and {c.judge for c in cases} == {"default"}
    responses = {c.item["response"]: c.expected for c in cases}
    for master_key in (":", "Thought process:", "Let's solve this problem step by step."):
        assert responses[master_key] is False
    assert any("grader" in r.lower() and not ok for r, ok in responses.items())
    assert sum(c.expected for c in cases) >= 6  # right answers too, not only traps


def _file(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines),
                    encoding="utf-8")
    return path


GOOD = {"prompt": "2+2?", "response": "4", "pass": True}


def test_every_problem_of_the_file_is_reported_with_line_field_and_value(tmp_path):
    path = _file(tmp_path, GOOD, "", {"prompt": 3, "response": "4", "pass": True},
                 {"prompt": "p", "response": "r", "range": [0.9, 0.2]},
                 {"prompt": "p", "response": "r", "label": 11},
                 {"prompt": "p", "a": "x", "b": "y", "preferred": "c"},
                 {"prompt": "p", "responses": ["x", "y"], "ranking": [0, 0]},
                 {"prompt": "p", "response": "r"}, "{not json",
                 {"prompt": "p", "response": "r", "pass": "yes"},
                 {"prompt": "p", "response": "r", "pass": True, "backend": "litellm:x"},
                 {"prompt": "p", "response": "r", "pass": True, "judge": "nope"},
                 {"prompt": "p", "response": "r", "pass": True, "colour": 1})
    with pytest.raises(CasesError) as raised:
        read_cases(path, CATALOG)
    problems = raised.value.problems
    assert problems == [
        "line 3: prompt must be a string or a list of messages, got int: 3",
        "line 4: range must be [low, high] with low <= high, got [0.9, 0.2]",
        "line 5: label must be within the judge's scale [0, 10], got 11",
        'line 6: preferred must be "a", "b" or "tie", got \'c\'',
        "line 7: ranking must list the indices of the 2 responses from best to worst, each "
        "once (e.g. [1, 0]), got [0, 0]",
        "line 8: a case needs exactly one label: label, range or pass (a response), "
        "preferred (a comparison with a and b) or ranking (a group with responses); it "
        "has none",
        problems[6],  # the JSON parser's own words
        "line 10: pass must be true or false, got 'yes'",
        "line 11: backend: a case does not choose its backend (ray-judge eval "
        "--backend/--samples do), got 'litellm:x'",
        "line 12: judge: unknown judge 'nope'; known: default, group, pairwise, "
        "terminal_agent, terminal_agent_structured",
        "line 13: unknown field(s) ['colour']; known: prompt, response, reference, rubric, "
        "metadata, judge, fields; and one label (label, range, pass, preferred, ranking), "
        "why, id",
    ]
    assert problems[6].startswith("line 9: not JSON (") and "'{not json'" in problems[6]
    assert str(raised.value).startswith(f"{path}: 11 problem(s), nothing was judged:")
    again = pickle.loads(pickle.dumps(raised.value))
    assert again.problems == problems and str(again) == str(raised.value)


def test_a_case_is_checked_against_its_judge(tmp_path):
    path = _file(tmp_path,
                 {"prompt": "p", "response": "r", "judge": "terminal_agent", "range": [0, 1]},
                 {"prompt": "p", "response": "r", "judge": "pairwise", "pass": True},
                 {"prompt": "p", "a": "x", "b": "y", "judge": "group", "preferred": "a"},
                 {"prompt": "p", "a": "x", "preferred": "a"},
                 {"prompt": "p", "responses": ["x"], "pass": True})
    with pytest.raises(CasesError) as raised:
        read_cases(path, CATALOG)
    problems = raised.value.problems
    assert problems[0].startswith("line 1: ") and "dockerfile" in problems[0]
    assert problems[1:] == [
        "line 2: judge: 'pairwise' is a pairwise judge; a score case needs a pointwise judge",
        "line 3: judge: 'group' is a group judge; a compare case needs a pairwise judge",
        "line 4: missing the field 'b'",
        "line 5: pass: labels a score case, but this is a group case (responses)",
    ]


def test_judge_names_the_judge_of_cases_that_name_none(tmp_path):
    path = _file(tmp_path, {"prompt": "p", "response": "r", "range": [0.5, 1],
                            "fields": {"dockerfile": "FROM x"}})
    (case,) = read_cases(path, CATALOG, judge="terminal_agent")
    assert case.judge == "terminal_agent" and case.expected == (0.5, 1.0)


@pytest.mark.parametrize(("text", "message"), [
    ("", "no cases: the file is empty"),
    ("[1, 2]", "line 1: a case must be a JSON object, got list: [1, 2]"),
])
def test_an_empty_or_shapeless_file_is_refused(tmp_path, text, message):
    with pytest.raises(CasesError) as raised:
        read_cases(_file(tmp_path, text), CATALOG)
    assert raised.value.problems == [message]


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(CasesError, match="cannot read the cases file"):
        read_cases(tmp_path / "nope.jsonl", CATALOG)
