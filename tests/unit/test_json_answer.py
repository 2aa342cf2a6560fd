"""The one JSON answer reader and the one ``<think>`` rule, shared by a group's and a
comparison's answer (``json_answer``) and by the ``json:<key>`` parser: every case is
read by both, and both must agree."""

from __future__ import annotations

import pytest

from ray_judge.errors import ScoreParseError
from ray_judge.judging.json_answer import json_objects, last_json_value
from ray_judge.judging.parsers import Parser
from ray_judge.judging.think import strip_think

DEEP = 100_000
READERS = {
    "json_answer": lambda text: last_json_value(text, "score"),
    "json:score": Parser.from_spec("json:score").read,
}


@pytest.fixture(params=sorted(READERS))
def read(request):
    return READERS[request.param]


@pytest.mark.parametrize(("text", "value"), [
    pytest.param('{"score": 3}', 3, id="bare"),
    pytest.param('Good work.\n```json\n{"score": 3}\n```\n', 3, id="fenced"),
    pytest.param('~~~\n{"score": 3}\n~~~', 3, id="fenced-tilde"),
    pytest.param('{"score": 1} no, {"score": 2}', 2, id="several-last-wins"),
    pytest.param('{"score": 1}\n```json\n{"score": 2}\n```', 2, id="bare-then-fenced"),
    pytest.param('{"score": 2} {"other": 1}', 2, id="last-with-the-key-wins"),
    pytest.param('{"notes": {"score": 9}, "score": 4}', 4, id="nested-is-a-part"),
    pytest.param('{"score": {"a": [1, {"b": 2}]}}', {"a": [1, {"b": 2}]}, id="nested-value"),
    pytest.param('<think>{"score": 9}</think>{"score": 4}', 4, id="think-closed"),
    pytest.param('<THINK>{"score": 9}</Think>\n{"score": 4}', 4, id="think-any-case"),
    pytest.param('{"score": 4}\n<think>{"score": 9}', 4, id="think-unclosed"),
    pytest.param('{"score": 9}</think>{"score": 4}', 4, id="lone-close"),
    pytest.param('{"score": 4} ' + "<think>" * 50_000, 4, id="many-unclosed-think"),
    pytest.param("[" * DEEP + "]" * DEEP + ' {"score": 2}', 2, id="deep-bare-array-skipped"),
    pytest.param("x {not json} " * 200_000 + '{"score": 5}', 5, id="huge-input"),
    pytest.param('{"a" ' * 100_000 + '{"score": 5}', 5, id="huge-repetition-loop"),
    pytest.param('{"score": [' + "1," * 50_000 + "1]}", [1] * 50_001, id="huge-object"),
    pytest.param('{"score": "' + "y" * 3_000_000 + '"}', "y" * 3_000_000, id="huge-value"),
    pytest.param('I use {braces}, {"half": } and f(x) = {x} before {"score": 6}', 6,
                 id="prose-braces"),
    pytest.param('{"score": 7', None, id="cut-off"),
    pytest.param('a set {1, 2} and {x}', None, id="prose-braces-only"),
    pytest.param('{"result": {"score": 9}}', None, id="only-nested"),
    pytest.param('<think>{"score": 9}</think> done', None, id="only-in-think"),
    pytest.param('<think>{"score": 9}', None, id="only-after-unclosed-think"),
    pytest.param('{"score": 9}</think> done', None, id="only-before-lone-close"),
])
def test_both_readers_read_the_same_answer(read, text, value) -> None:
    if value is None:
        with pytest.raises(ScoreParseError, match=r"no JSON object with the key|is empty"):
            read(text)
    else:
        assert read(text) == value


@pytest.mark.parametrize("text", [
    pytest.param('{"score": ' + "[" * DEEP + "]" * DEEP + "}", id="deep-array"),
    pytest.param('{"a": ' * DEEP + "1" + "}" * DEEP, id="deep-object"),
    pytest.param('{"a": ' * DEEP + "1" + "}" * DEEP + ' {"score": 3}', id="deep-then-answer"),
    pytest.param('{"a": ' * DEEP, id="deep-unclosed"),
    pytest.param('{"a": [' * DEEP, id="deep-mixed-unclosed"),
])
def test_json_nested_too_deep_is_a_parse_error_not_a_recursion_error(read, text) -> None:
    # json's decoder raises RecursionError near 1,000 levels; that must never escape a
    # parser (it is not a ScoreParseError, so it would not become a parse_error verdict).
    with pytest.raises(ScoreParseError, match="nested too deep"):
        read(text)


@pytest.mark.parametrize(("text", "objects"), [
    ("", []),
    ("{} {}", [{}, {}]),
    ('{"a": {"b": 1}} x {"c": 2}', [{"a": {"b": 1}}, {"c": 2}]),
    ('[{"in": "a list"}]', [{"in": "a list"}]),
    ('{"s": "a } in a string {"} {"t": 1}', [{"s": "a } in a string {"}, {"t": 1}]),
    ("{bad} {\"ok\": true}", [{"ok": True}]),
])
def test_json_objects_finds_the_top_level_objects_in_order(text, objects) -> None:
    assert json_objects(text) == objects


@pytest.mark.parametrize(("text", "kept"), [
    ("plain", "plain"),
    ("a<think>b</think>c", "a c"),
    ("7<think>hmm</think>5", "7 5"),
    ("<think>x</think>answer", "answer"),
    ("answer<think>x</think>", "answer"),
    ("a<think>unclosed", "a"),
    ("a<think>b</think>c<think>unclosed", "a c"),
    ("scratch</think>answer", "answer"),
    ("a</think>b<think>c", "b"),
    ("a<think>b<think>c</think>d", "a d"),
    ("<think>x</think>y</think>z", "z"),
    ("a<THINK>b</Think>c", "a c"),
    ("\u0130<think>x", "\u0130"),  # lower() lengthens \u0130: no index taken from it
    ("<thi<think>x</think>nk>", "<thi nk>"),  # a span's removal never forms a tag
])
def test_the_one_think_rule(text, kept) -> None:
    assert strip_think(text) == kept
    assert strip_think(kept) == kept
