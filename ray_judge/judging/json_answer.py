"""Read a judge's JSON answer strictly: a group's ``{"scores": [...]}``, a comparison's
``{"preference": N}``.

The answer is the **last** JSON object in the text that has the key, bare or inside a
fenced block; text inside ``<think>...</think>`` (or after an unclosed ``<think>``) is
the judge thinking aloud and is never read. The value must be exactly what was asked
for: for a group, a list of exactly ``k`` finite numbers each within ``[0, scale]``
(JSON numbers; ``"7"``, ``true``, ``NaN``, ``null`` are not); anything else raises
:class:`~ray_judge.errors.ScoreParseError` for the whole answer. There is no partial
reading: a list one short is not "the first k-1 scores", it is a judge that lost count,
and every number in it is suspect.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..errors import ScoreParseError, excerpt

__all__ = ["check_scores", "json_objects", "last_json_value", "read_number", "read_scores"]

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)


def last_json_value(text: str, key: str) -> Any:
    """The value of ``key`` in the last top-level JSON object of ``text`` that has it.

    Raises:
        ScoreParseError: ``text`` is not text, or holds no such object outside
            ``<think>`` spans.
    """
    if not isinstance(text, str):
        raise ScoreParseError(f"judge output must be text, got {type(text).__name__}")
    visible = _THINK.sub(" ", text)
    decoder = json.JSONDecoder()
    found: list[Any] = []
    at = visible.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(visible, at)
        except ValueError:
            at = visible.find("{", at + 1)
            continue
        if isinstance(value, dict) and key in value:
            found.append(value[key])
        # Objects nested in this one are its parts, not answers of their own; skipping
        # past it also keeps the scan linear in the text's length.
        at = visible.find("{", end)
    if not found:
        where = " outside <think>" if visible != text else ""
        raise ScoreParseError(
            f'no JSON object with the key "{key}"{where} in the judge output '
            f"(starts with {excerpt(text)!r})")
    return found[-1]


def read_scores(text: str, k: int, scale: float) -> list[float]:
    """The ``k`` raw scores of ``{"scores": [N1, ..., Nk]}``, in the order given.

    Raises:
        ScoreParseError: no such object, or its value is not a list of exactly ``k``
            finite numbers within ``[0, scale]`` (the message names the first problem).
    """
    return check_scores(last_json_value(text, "scores"), k, (0.0, scale))


def check_scores(value: Any, k: int, scale: tuple[float, float],
                 where: str = '"scores"') -> list[float]:
    """``value`` (a parsed answer) as exactly ``k`` numbers within ``scale``, or
    ScoreParseError naming the first problem."""
    if not isinstance(value, list):
        raise ScoreParseError(f"{where} must be a list of {k} numbers, got "
                              f"{_shown(value)}", value=excerpt(str(value)))
    if len(value) != k:
        raise ScoreParseError(f"{where} holds {len(value)} numbers for {k} responses: "
                              f"{_shown(value)}", value=excerpt(str(value)))
    return [_number(item, scale, f"{where}[{i}]") for i, item in enumerate(value)]


def read_number(text: str, key: str, scale: float) -> float:
    """The number under ``key`` (e.g. ``{"preference": 7}``), within ``[0, scale]``."""
    return _number(last_json_value(text, key), (0.0, scale), f'"{key}"')


def _number(item: Any, scale: tuple[float, float], where: str) -> float:
    shown = _shown(item)
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        raise ScoreParseError(f"{where} must be a number, got {shown}", value=shown)
    if isinstance(item, float) and not math.isfinite(item):
        raise ScoreParseError(f"{where} is not a finite number: {shown}", value=shown)
    if not scale[0] <= item <= scale[1]:
        raise ScoreParseError(f"{where} is outside the scale {scale[0]:g}-{scale[1]:g}: "
                              f"{shown}", value=shown)
    return float(item)


def _shown(value: Any) -> str:
    try:
        return excerpt(json.dumps(value))
    except (TypeError, ValueError):  # a structured answer may hold anything
        return excerpt(repr(value))


def json_objects(text: str) -> list[Any]:
    """Every JSON object in ``text``, in order: each ``{`` that starts a valid object,
    outermost first (an object inside another is not a separate answer)."""
    decoder = json.JSONDecoder()
    objects = []
    index = text.find("{")
    while index != -1:
        try:
            obj, end = decoder.raw_decode(text, index)
        except (ValueError, RecursionError):
            index = text.find("{", index + 1)
            continue
        objects.append(obj)
        index = text.find("{", end)
    return objects
