"""The panel keys of a judge definition (issue 23): accepted values, clear errors."""

from __future__ import annotations

import pytest

from ray_judge.errors import JudgeDefinitionError
from ray_judge.judging.catalog import load_judges_file
from ray_judge.judging.definition import JudgeDefinition
from ray_judge.judging.panel import Panel, spread
from ray_judge.spec import BackendSpec

TWO = ["@current", "litellm:openai/judge-a"]


def test_a_three_line_panel_in_a_judges_file(tmp_path) -> None:
    path = tmp_path / "judges.toml"
    path.write_text('[judges.math_panel]\n'
                    'panel = ["@current", "litellm:openai/a", "litellm:gemini/b"]\n'
                    'aggregate = "median"\nmin_members = 2\n'
                    'escalate_to = "litellm:anthropic/c"\nescalate_when = "spread > 0.3"\n')
    (judge,) = load_judges_file(path)
    plan = judge.panel_plan
    assert plan == Panel(("@current", "litellm:openai/a", "litellm:gemini/b"),
                         (None, BackendSpec.parse("litellm:openai/a"),
                          BackendSpec.parse("litellm:gemini/b")),
                         "median", 2, BackendSpec.parse("litellm:anthropic/c"), 0.3, "decides")
    # only panel keys: the default judge's rubric layout and parser
    assert judge.system is None and judge.parser == "score_line"
    assert judge.version == JudgeDefinition(name="x", aggregate="median").version


def test_defaults_quorum_is_a_majority_and_no_escalation() -> None:
    plan = JudgeDefinition(name="p", panel=[*TWO, "litellm:openai/b"]).panel_plan
    assert plan.min_members == 2 and plan.escalate_to is None
    assert not plan.escalates([0.0, 1.0])
    assert JudgeDefinition(name="single").panel_plan is None


@pytest.mark.parametrize(("keys", "key", "shown"), [
    ({"panel": ["@current"]}, "panel", "['@current']"),
    ({"panel": "@current"}, "panel", "'@current'"),
    ({"panel": ["@current", "nope:x"]}, "panel", "'nope:x'"),
    ({"panel": ["@current", 3]}, "panel", "3"),
    ({"panel": TWO + TWO[1:]}, "panel", "litellm:openai/judge-a"),
    ({"min_members": 2}, "min_members", "2"),
    ({"escalate_to": "litellm:openai/x"}, "escalate_to", "litellm:openai/x"),
    ({"panel": TWO, "min_members": 3}, "min_members", "3"),
    ({"panel": TWO, "min_members": True}, "min_members", "True"),
    ({"panel": TWO, "escalate_to": "litellm:openai/x"}, "escalate_to", "litellm:openai/x"),
    ({"panel": TWO, "escalate_when": "spread > 0.3"}, "escalate_when", "spread > 0.3"),
    ({"panel": TWO, "escalate_to": "@current", "escalate_when": "spread > 0.3"},
     "escalate_to", "@current"),
    ({"panel": TWO, "escalate_to": "litellm:openai/x", "escalate_when": "spread >= 0.3"},
     "escalate_when", "spread >= 0.3"),
    ({"panel": TWO, "escalate_to": "litellm:openai/x", "escalate_when": "spread > 1.5"},
     "escalate_when", "spread > 1.5"),
    ({"panel": TWO, "escalation": "votes"}, "escalation", "votes"),
    ({"panel": TWO, "escalate_to": TWO[1], "escalate_when": "spread > 0.3"},
     "escalate_to", TWO[1]),
])
def test_bad_panel_keys_name_the_judge_key_and_value(keys, key, shown) -> None:
    with pytest.raises(JudgeDefinitionError) as caught:
        JudgeDefinition(name="math_panel", **keys)
    assert "'math_panel'" in str(caught.value) and shown in str(caught.value)
    assert caught.value.key == key and caught.value.judge == "math_panel"


def test_a_judges_file_error_names_the_file(tmp_path) -> None:
    path = tmp_path / "judges.toml"
    path.write_text('[judges.p]\npanel = ["@current", "litellm:openai/a"]\n'
                    'aggregate = "mode"\n')
    with pytest.raises(JudgeDefinitionError, match=r"judges.toml: judge 'p': aggregate"):
        load_judges_file(path)


def test_escalation_fires_only_beyond_the_threshold_or_on_a_tied_vote() -> None:
    plan = JudgeDefinition(name="p", panel=[*TWO, "litellm:openai/b"],
                           escalate_to="litellm:openai/x", escalate_when="spread > 0.3"
                           ).panel_plan
    assert spread([0.4, 0.7]) == 0.3 and not plan.escalates([0.4, 0.7, 0.5])
    assert plan.escalates([0.4, 0.71]) and not plan.escalates([0.9])
    vote = JudgeDefinition(name="v", panel=[*TWO, "litellm:openai/b", "litellm:openai/c"],
                           aggregate="majority", escalate_to="litellm:openai/x",
                           escalate_when="spread > 0.9").panel_plan
    assert vote.escalates([0.0, 0.0, 0.5, 0.5]) and not vote.escalates([0.0, 0.0, 0.5])
