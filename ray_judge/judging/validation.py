"""The checks a judge definition passes on construction.

:func:`validate` runs them all on a new :class:`~ray_judge.judging.definition.JudgeDefinition`
and normalises what it accepts in place (a scale to two floats, labels to a dict of
floats, a schema to a private copy, a group or pairwise judge's default parser). A bad
value raises :class:`~ray_judge.errors.JudgeDefinitionError` naming the judge, the key and
the value, and the file it came from.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..config import CALIBRATIONS
from ..errors import JudgeDefinitionError, shown
from ..messages import check_messages, is_messages
from .json_schema import schema_problem
from .rubric import Rubric
from .template import placeholders

if TYPE_CHECKING:
    from .definition import JudgeDefinition

__all__ = ["AGGREGATES", "KINDS", "validate"]

#: How the scores of ``samples`` judgements are combined.
AGGREGATES = ("mean", "median", "majority")
#: What a judge grades: one response, a group of responses to one prompt, or a pair.
KINDS = ("pointwise", "group", "pairwise")
#: The answer a group or pairwise judge gives unless its definition names a parser.
_KIND_PARSERS = {"group": "json:scores", "pairwise": "json:preference"}
_MAX_GROUP = 64
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_MIN_INPUT_CHARS = 100
_MAX_CORRECTIONS = 5
_MAX_SAMPLES = 32


def validate(judge: JudgeDefinition) -> None:
    """Check every field of ``judge``, normalising the ones it accepts.

    Raises:
        JudgeDefinitionError: the first bad value, with the judge, key and value.
    """
    if not (isinstance(judge.name, str) and _NAME.fullmatch(judge.name)):
        raise JudgeDefinitionError(
            f"{_where(judge.source)}a judge name must be 1-64 letters, digits, '_', '.' or "
            f"'-', got {judge.name!r}", judge=str(judge.name), key="name", value=judge.name)
    _text(judge, "system")
    _text(judge, "user")
    if judge.user is not None:
        user = judge.user
        _check(judge, lambda: placeholders(user, "user template"), "user", user)
    _kind(judge)
    _scale(judge)
    _labels(judge)
    _parser(judge)
    if judge.schema is not None:
        _schema(judge)
    _integer(judge, "correction_turns", 0, _MAX_CORRECTIONS)
    _integer(judge, "samples", 1, _MAX_SAMPLES)
    if judge.aggregate not in AGGREGATES:
        _fail(judge, "aggregate", judge.aggregate, f"must be one of {', '.join(AGGREGATES)}")
    if judge.max_input_chars is not None:
        _integer(judge, "max_input_chars", _MIN_INPUT_CHARS, 100_000_000)
    if judge.temperature is not None and not (
            is_number(judge.temperature) and 0 <= judge.temperature <= 2):
        _fail(judge, "temperature", judge.temperature, "must be a number from 0 to 2")
    if judge.max_tokens is not None:
        _integer(judge, "max_tokens", 16, 1_000_000)
    if not isinstance(judge.frame, bool):
        _fail(judge, "frame", judge.frame, "must be true or false")
    if judge.calibrate is not None and judge.calibrate not in CALIBRATIONS:
        _fail(judge, "calibrate", judge.calibrate,
              f"must be one of {', '.join(CALIBRATIONS)}")
    _canaries(judge)
    if judge.system is None and judge.kind == "pointwise":
        _rubric_layout(judge)
    if judge.rubric is not None and not isinstance(judge.rubric, Rubric):
        _fail(judge, "rubric", judge.rubric, "must be a Rubric")


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _fail(judge: JudgeDefinition, key: str, value: Any, problem: str) -> None:
    raise JudgeDefinitionError(
        f"{_where(judge.source)}judge {judge.name!r}: {key} {problem}, got {shown(value, 80)}",
        judge=judge.name, key=key, value=shown(value, 80),
        path=None if judge.source == "code" else judge.source)


def _check(judge: JudgeDefinition, check: Callable[[], Any], key: str, value: Any) -> None:
    try:
        check()
    except (ValueError, TypeError) as exc:
        raise JudgeDefinitionError(
            f"{_where(judge.source)}judge {judge.name!r}: {key}: {exc}", judge=judge.name,
            key=key, value=shown(value, 80),
            path=None if judge.source == "code" else judge.source) from None


def _schema(judge: JudgeDefinition) -> None:
    _check(judge, lambda: json.dumps(judge.schema, sort_keys=True), "schema", judge.schema)
    if not isinstance(judge.schema, Mapping):
        _fail(judge, "schema", judge.schema, "must be a table (a JSON schema object)")
    object.__setattr__(judge, "schema", copy.deepcopy(dict(judge.schema)))
    problem = schema_problem(judge.schema)
    if problem is not None:
        _fail(judge, "schema", problem[1], problem[0])


def _kind(judge: JudgeDefinition) -> None:
    if judge.kind not in KINDS:
        _fail(judge, "kind", judge.kind, f"must be one of {', '.join(KINDS)}")
    _integer(judge, "max_group", 2, _MAX_GROUP)
    for key in ("shuffle", "swap"):
        if not isinstance(getattr(judge, key), bool):
            _fail(judge, key, getattr(judge, key), "must be true or false")
    if judge.fallback is not None and (judge.fallback != "pointwise" or judge.kind != "group"):
        _fail(judge, "fallback", judge.fallback, 'must be "pointwise", on a judge of kind '
              '"group" (or absent)')
    if judge.kind == "pointwise":
        return
    if judge.user is not None:
        _fail(judge, "user", judge.user, f"is not taken by a {judge.kind} judge: its "
              "responses go in numbered data blocks of their own")
    if judge.samples != 1:
        _fail(judge, "samples", judge.samples, f"must be 1 for a {judge.kind} judge")
    if judge.parser == "score_line":  # the pointwise default: this kind's own answer
        object.__setattr__(judge, "parser", _KIND_PARSERS[judge.kind])


def _canaries(judge: JudgeDefinition) -> None:
    if not isinstance(judge.canaries, bool):
        _fail(judge, "canaries", judge.canaries, "must be true or false")
    answers = judge.canary_answers
    if isinstance(answers, (str, bytes)) or not isinstance(answers, (list, tuple)):
        _fail(judge, "canary_answers", answers, "must be a list of answers (texts or "
              "message lists)")
    if answers and judge.kind == "pairwise":
        _fail(judge, "canaries_file", answers, "is for pointwise and group judges; a "
              "pairwise judge gets no canaries")
    for i, answer in enumerate(answers):
        if isinstance(answer, str):
            continue
        if not is_messages(answer):
            _fail(judge, f"canary_answers[{i}]", answer, "must be a text or a list of chat "
                  "messages")
        _check(judge, lambda answer=answer, i=i: check_messages(f"canary_answers[{i}]", answer),
               f"canary_answers[{i}]", answer)
    object.__setattr__(judge, "canary_answers", tuple(answers))


def _text(judge: JudgeDefinition, key: str) -> None:
    value = getattr(judge, key)
    if value is not None and not (isinstance(value, str) and value.strip()):
        _fail(judge, key, value, "must be non-empty text")


def _integer(judge: JudgeDefinition, key: str, low: int, high: int) -> None:
    value = getattr(judge, key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(judge, key, value, f"must be an integer from {low} to {high}")


def _scale(judge: JudgeDefinition) -> None:
    scale = judge.scale
    if scale is None:
        return
    if not (isinstance(scale, (tuple, list)) and len(scale) == 2
            and all(is_number(v) for v in scale) and scale[0] < scale[1]):
        _fail(judge, "scale", scale, "must be [low, high], two finite numbers, low < high")
    object.__setattr__(judge, "scale", (float(scale[0]), float(scale[1])))


def _labels(judge: JudgeDefinition) -> None:
    labels = judge.labels
    if labels is None:
        return
    if not (isinstance(labels, Mapping) and labels):
        _fail(judge, "labels", labels, "must be a non-empty table of label = number")
    low, high = judge.effective_scale
    for label, number in labels.items():
        if not (isinstance(label, str) and label.strip()):
            _fail(judge, "labels", label, "must have non-empty text labels")
        if not (is_number(number) and low <= number <= high):
            _fail(judge, f"labels.{label}", number,
                  f"must be a number within the scale {low:g}-{high:g}")
    object.__setattr__(judge, "labels", {k: float(v) for k, v in labels.items()})


def _parser(judge: JudgeDefinition) -> None:
    if not isinstance(judge.parser, str):
        _fail(judge, "parser", judge.parser, "must be text such as 'yaml:score'")
    parser = None

    def build() -> None:
        nonlocal parser
        parser = judge.parsed

    _check(judge, build, "parser", judge.parser)
    assert parser is not None
    if parser.kind == "score_line" and judge.effective_scale[0] < 0:
        _fail(judge, "scale", judge.scale, "must not go below 0 with score_line (a SCORE "
              "line holds an unsigned number)")
    if judge.labels and parser.kind == "score_line":
        _fail(judge, "labels", judge.labels, "need a parser that reads text (regex, json, "
              "yaml or python), not score_line")


def _rubric_layout(judge: JudgeDefinition) -> None:
    # Today's frame says "SCORE: N from 0 to max" and names three blocks: a judge
    # that keeps it must keep what it promises.
    why = ("is not allowed without system (or system_file): the configured rubric "
           "asks for 'SCORE: N' from 0, with its own layout")
    if judge.user is not None:
        _fail(judge, "user", judge.user, why)
    if judge.parser != "score_line":
        _fail(judge, "parser", judge.parser, why)
    if judge.scale is not None and judge.scale[0] != 0:
        _fail(judge, "scale", judge.scale, why)
    if not judge.frame:
        _fail(judge, "frame", judge.frame, why)


def _where(source: str) -> str:
    return "" if source == "code" else f"{source}: "
