"""Read a judge's JSON answer strictly: a group's ``{"scores": [...]}``, a comparison's
``{"preference": N}``.

The answer is the **last** JSON object in the text that has the key, bare or inside a
fenced block; the judge's thinking (``<think>`` spans, and everything after an unclosed
``<think>``: the rule of :mod:`.think`, as for every parser) is never read. The value
must be exactly what was asked for: for a group, a list of exactly ``k`` finite numbers
each within ``[0, scale]`` (JSON numbers; ``"7"``, ``true``, ``NaN``, ``null`` are not);
anything else raises :class:`~ray_judge.errors.ScoreParseError` for the whole answer.
There is no partial reading: a list one short is not "the first k-1 scores", it is a
judge that lost count, and every number in it is suspect.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..errors import ScoreParseError, excerpt
from .think import strip_think

__all__ = ["check_scores", "json_objects", "last_json_value", "read_number", "read_scores"]

# A failed decode builds a JSONDecodeError, which counts the lines from the start of the
# text to where it failed: trying many "{" of a long answer would be quadratic in its
# length. So only a "{" that can start an object (a key or "}" next) is tried, and it is
# tried in a window of the text first.
_OBJECT_START = re.compile(r'\{[ \t\n\r]*["}]')
_WINDOW = 4096
_LOOKAHEAD = 64  # more than the decoder reads past a token before it can fail


def last_json_value(text: str, key: str) -> Any:
    """The value of ``key`` in the last top-level JSON object of ``text`` that has it.

    Raises:
        ScoreParseError: ``text`` is not text, holds no such object outside ``<think>``
            spans, or holds JSON nested too deep to read.
    """
    if not isinstance(text, str):
        raise ScoreParseError(f"judge output must be text, got {type(text).__name__}")
    visible = strip_think(text)
    found = [obj[key] for obj in json_objects(visible) if isinstance(obj, dict) and key in obj]
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
    """Every top-level JSON object in ``text``, in order, bare or fenced: each ``{`` that
    starts a valid object. Objects nested in one are its parts, not answers of their own;
    a ``{`` that starts no object (prose, a cut-off answer) is skipped.

    Raises:
        ScoreParseError: an object is nested deeper than Python's decoder can go (it
            raises RecursionError near 1,000 levels). No judge answers like that;
            skipping it would mean trying every ``{`` inside it, quadratic in its size,
            and reading its inner parts as answers.
    """
    decoder = json.JSONDecoder()
    objects = []
    start = _OBJECT_START.search(text)
    while start is not None:
        at = start.start()
        try:
            obj, end = _decode(decoder, text, at)
        except ValueError:
            start = _OBJECT_START.search(text, at + 1)
            continue
        except RecursionError:
            raise ScoreParseError(f"the judge output holds JSON nested too deep to read "
                                  f"(from character {at})") from None
        objects.append(obj)
        # Skipping past the object keeps the scan linear in the text's length.
        start = _OBJECT_START.search(text, end)
    return objects


def _decode(decoder: json.JSONDecoder, text: str, at: int) -> tuple[Any, int]:
    """``decoder.raw_decode(text, at)``, costing what it reads rather than ``at``: an
    object that decodes in the window is the same object in the whole text, and a failure
    well inside the window is not the window's cut."""
    window = text[at:at + _WINDOW]
    try:
        obj, end = decoder.raw_decode(window)
    except json.JSONDecodeError as exc:
        cut = (at + _WINDOW < len(text) and (exc.pos >= len(window) - _LOOKAHEAD
                                              or exc.msg.startswith("Unterminated string")))
        if not cut:
            raise
        return decoder.raw_decode(text, at)
    return obj, at + end
