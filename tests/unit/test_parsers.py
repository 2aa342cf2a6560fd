"""The answer parsers of user-defined judges: a table per kind, and properties over
made-up answers (no parser returns a number outside its scale, none raises anything but
ScoreParseError)."""

from __future__ import annotations

import math
import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ray_judge import JudgeDefinition, ScoreParseError
from ray_judge.judging.parsers import PARSERS, Parser, read_value, strip_think


def read(spec: str, text: str, scale=(0.0, 1.0), labels=None) -> float:
    return read_value(Parser.from_spec(spec, score_max=scale[1]).read(text), scale, labels)


FENCED_YAML = "Reasoning here.\n\n```yaml\nscore: 0.35\nreason: partial\n```\n"

CASES = [
    # (parser, text, scale, labels, expected score or None for parse_error)
    ("yaml:score", FENCED_YAML, (0, 1), None, 0.35),
    ("yaml:score", "```yml\nscore: 1\n```", (0, 1), None, 1.0),
    ("yaml:score", "```\nscore: 0\n```", (0, 1), None, 0.0),
    ("yaml:score", "All good.\nscore: 0.35", (0, 1), None, 0.35),
    ("yaml:score", "**score**: 0.5", (0, 1), None, 0.5),
    ("yaml:score", "```yaml\nscore: 0.2\n```\nOn reflection:\n```yaml\nscore: 0.6\n```",
     (0, 1), None, 0.6),
    ("yaml:score", "score: 0.9\n```yaml\nscore: 0.1\n```", (0, 1), None, 0.1),
    ("yaml:score", "```yaml\nscore: 0.1\n```\nscore: 0.9", (0, 1), None, 0.9),
    ("yaml:score", "<think>score: 0.9</think>\n```yaml\nscore: 0.3\n```", (0, 1), None, 0.3),
    ("yaml:score", "<think>```yaml\nscore: 0.9\n```</think>", (0, 1), None, None),
    ("yaml:score", "reasoning</think>\nscore: 0.4", (0, 1), None, 0.4),
    ("yaml:score", "score: 0.4\n<think>never closed score: 1", (0, 1), None, 0.4),
    ("yaml:score", "```yaml\nscore: 1.5\n```", (0, 1), None, None),
    ("yaml:score", "```yaml\nscore: -0.1\n```", (0, 1), None, None),
    ("yaml:score", "```yaml\nscore: high\n```", (0, 1), None, None),
    ("yaml:score", "```yaml\nscore: true\n```", (0, 1), None, None),
    ("yaml:score", "```yaml\nscore: .nan\n```", (0, 1), None, None),
    ("yaml:score", "```yaml\n: : bad yaml [\n```", (0, 1), None, None),
    ("yaml:score", "no verdict at all", (0, 1), None, None),
    ("yaml:score", "", (0, 1), None, None),
    ("yaml:score", "SCORE: 8", (0, 10), None, 8.0),  # a bare "score:" line is YAML too
    ("yaml:grade", "```yaml\ngrade: B\n```", (0, 1), {"A": 1.0, "B": 0.5, "C": 0.0}, 0.5),
    ("yaml:grade", "```yaml\ngrade: D\n```", (0, 1), {"A": 1.0, "B": 0.5}, None),
    ("yaml:score", "```yaml\nscore: 7\n```", (1, 7), None, 7.0),
    ("yaml:score", "```yaml\nscore: 0\n```", (1, 7), None, None),
    ("json:score", '{"score": 0.7, "why": "ok"}', (0, 1), None, 0.7),
    ("json:score", 'Answer: ```json\n{"score": 3}\n```', (0, 10), None, 3.0),
    ("json:score", '{"score": 0.2} then {"score": 0.8}', (0, 1), None, 0.8),
    ("json:score", '{"score": 0.2} then {"other": 1}', (0, 1), None, 0.2),
    ("json:score", '{"outer": {"score": 0.9}}', (0, 1), None, None),
    ("json:score", '<think>{"score": 1}</think>{"score": 0}', (0, 1), None, 0.0),
    ("json:score", '{"score": "0.5"}', (0, 1), None, 0.5),
    ("json:score", '{"score": null}', (0, 1), None, None),
    ("json:score", '{"score": 1e400}', (0, 1), None, None),
    ("json:score", "{" * 50 + '"score": 1', (0, 1), None, None),
    ("json:score", '{"score": 11}', (0, 10), None, None),
    ("json:verdict", '{"verdict": "PASS"}', (0, 1), {"PASS": 1, "FAIL": 0}, 1.0),
    ("json:verdict", '{"verdict": "pass"}', (0, 1), {"PASS": 1, "FAIL": 0}, None),
    ("regex:Final grade: (\\d+)", "Final grade: 4\nFinal grade: 5", (0, 5), None, 5.0),
    ("regex:Final grade: (\\d+)", "Final grade: 6", (0, 5), None, None),
    ("regex:Verdict: (\\w+)", "Verdict: GOOD", (0, 1), {"GOOD": 1, "BAD": 0}, 1.0),
    ("regex:Verdict: (\\w+)", "<think>Verdict: GOOD</think>Verdict: BAD", (0, 1),
     {"GOOD": 1, "BAD": 0}, 0.0),
    ("regex:Rating=(\\S+)", "Rating=abc", (0, 1), None, None),
    ("regex:Rating=(\\S+)", "nothing", (0, 1), None, None),
    ("score_line", "Good.\nSCORE: 7", (0, 10), None, 7.0),
    ("score_line", "SCORE: 8/10", (0, 10), None, 8.0),
    ("score_line", "```\nSCORE: 9\n```", (0, 10), None, None),
    ("score_line", "SCORE: 11", (0, 10), None, None),
    ("score_line", "SCORE: 0", (1, 10), None, None),
]


@pytest.mark.parametrize(("spec", "text", "scale", "labels", "expected"), CASES)
def test_parser_table(spec, text, scale, labels, expected) -> None:
    scale = (float(scale[0]), float(scale[1]))
    if expected is None:
        with pytest.raises(ScoreParseError):
            read(spec, text, scale, labels)
    else:
        assert read(spec, text, scale, labels) == expected


def test_python_parser_runs_the_function_and_turns_its_exceptions_into_parse_errors(
        monkeypatch) -> None:
    module = types.ModuleType("h9_parsers")
    module.first_word = lambda text: text.split()[0]
    module.boom = lambda text: 1 / 0
    monkeypatch.setitem(sys.modules, "h9_parsers", module)
    assert read("python:h9_parsers:first_word", "0.25 because", (0, 1)) == 0.25
    with pytest.raises(ScoreParseError, match="ZeroDivisionError"):
        read("python:h9_parsers:boom", "anything", (0, 1))
    with pytest.raises(ScoreParseError, match="ModuleNotFoundError"):
        read("python:no_such_module_h9:f", "anything", (0, 1))


@pytest.mark.parametrize(("spec", "words"), [
    ("nope", "unknown parser kind 'nope'"),
    ("regex:(a)(b)", "exactly one group"),
    ("regex:no group", "exactly one group"),
    ("regex:(", "not a valid pattern"),
    ("json:", "needs a key"),
    ("yaml:two words", "needs a key"),
    ("python:justmodule", "python:<module>:<function>"),
    ("score_line:x", "takes no argument"),
])
def test_bad_parser_specs_say_what_is_wrong(spec, words) -> None:
    with pytest.raises(ValueError, match=words):
        Parser.from_spec(spec)


@pytest.mark.parametrize(("text", "kept"), [
    ("a<think>b</think>c", "a c"),
    ("a<THINK>b</THINK>c<think>d</think>e", "a c e"),
    ("a<think>unclosed", "a"),
    ("scratch</think>answer", "answer"),
    ("plain", "plain"),
])
def test_think_spans_are_never_read(text, kept) -> None:
    assert strip_think(text) == kept


def test_read_value_refuses_booleans_infinities_and_unknown_labels() -> None:
    for value in (True, float("inf"), float("nan"), None, [1], "1/2", 10**400):
        with pytest.raises(ScoreParseError):
            read_value(value, (0.0, 1.0))
    with pytest.raises(ScoreParseError, match="not one of the labels A, B"):
        read_value("C", (0.0, 1.0), {"A": 1.0, "B": 0.0})


# -- properties -------------------------------------------------------------------------

SPECS = ["score_line", "yaml:score", "json:score", "regex:score[:=] *(\\S+)", "yaml:grade",
         "json:grade"]
answer_bits = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["score: ", "SCORE: ", '{"score": ', "}", "```yaml\n", "```json\n",
                     "```\n", "\n", "<think>", "</think>", "grade: ", "A", "B", "-", ".",
                     "1e308", "1e309", "nan", "inf", "0.5", "10", "11", "-1", "/10",
                     "true", "null", "[", "]", ": :", "\u2028", "\x00"]),
    st.floats(allow_nan=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
)
answers = st.lists(answer_bits, max_size=20).map("".join)
scales = st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.floats(0.001, 1e6)).map(
    lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=400, deadline=None)
@given(spec=st.sampled_from(SPECS), text=answers, scale=scales,
       labelled=st.booleans())
def test_no_parser_raises_or_leaves_the_scale(spec, text, scale, labelled) -> None:
    if spec == "score_line":  # an unsigned SCORE line: its judges' scales start at >= 0
        scale = (abs(scale[0]), abs(scale[0]) + scale[1] - scale[0])
    low, high = scale
    labels = {"A": high, "B": low} if labelled and spec != "score_line" else None
    try:
        value = read(spec, text, scale, labels)
    except ScoreParseError:
        return
    assert math.isfinite(value) and low <= value <= high


@settings(max_examples=200, deadline=None)
@given(spec=st.sampled_from(SPECS), text=answers, structured=st.one_of(
    st.none(), st.dictionaries(st.sampled_from(["score", "grade", "x"]),
                               st.one_of(st.floats(), st.integers(), st.text(max_size=5),
                                         st.booleans(), st.none()), max_size=2)))
def test_a_judge_reads_a_score_within_0_1_or_a_parse_error(spec, text, structured) -> None:
    judge = JudgeDefinition(name="p", system="Grade.", parser=spec, scale=(2, 9),
                            schema={"type": "object"})
    try:
        score, _ = judge.read(text, structured)
    except ScoreParseError:
        return
    assert 0.0 <= score <= 1.0


def test_every_parser_kind_has_a_table_row() -> None:
    kinds = {spec.partition(":")[0] for spec, *_ in CASES} | {"python"}
    assert kinds == set(PARSERS)


@pytest.mark.parametrize(("spec", "text"), [
    ("yaml:score", "```yaml\nscore: 2024-13-45\n```"),
    ("yaml:score", "score: 2024-13-45"),
    ("json:score", "[" * 100_000),
    ("yaml:score", "```yaml\n" + "[" * 10_000 + "\n```"),
])
def test_pathological_answers_are_parse_errors(spec, text) -> None:
    with pytest.raises(ScoreParseError):
        read(spec, text)
