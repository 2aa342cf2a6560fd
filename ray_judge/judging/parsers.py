"""How a judge's answer is read: a registry of parsers by kind, each a small pure function.

A parser spec is ``kind`` or ``kind:argument``:

    score_line            the last ``SCORE: N`` line (today's format, :mod:`.parsing`)
    regex:<pattern>       the last match of a pattern with exactly one group
    json:<key>            ``key`` of the last JSON object (fenced or bare) that has it
    yaml:<key>            ``key`` of the last YAML mapping (fenced, or a bare ``key: v``)
    python:<mod>:<func>   ``func(text)`` imported from ``mod`` in the worker

Every parser except ``score_line`` first drops the judge's thinking (``<think>`` spans,
by the one rule of :mod:`.think`): a reasoning model's scratch work is not its answer.
Each returns the raw value (a number, or a label's text); :func:`read_value` checks it
against the judge's scale or labels. The one error type is
:class:`~ray_judge.errors.ScoreParseError`; a ``python:`` parser's own exceptions become
one.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ScoreParseError, excerpt
from .json_answer import last_json_value
from .parsing import parse_score
from .think import strip_think

__all__ = ["PARSERS", "Parser", "read_value", "strip_think"]

_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$",
                     re.DOTALL | re.MULTILINE)
_KEY = re.compile(r"[A-Za-z_][\w.-]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


@dataclass(frozen=True)
class Parser:
    """A parser built from its spec: ``read(text)`` returns the raw value or raises
    ScoreParseError; ``key`` is the field a structured answer holds the value in."""

    spec: str
    kind: str
    argument: str
    read: Callable[[str], Any]
    key: str

    @classmethod
    def from_spec(cls, spec: str, *, score_max: float = 10.0) -> Parser:
        """Build the parser named by ``spec``; ValueError names what is wrong with it."""
        if not isinstance(spec, str):
            raise TypeError(f"a parser spec must be text, got {type(spec).__name__}")
        kind, _, argument = spec.partition(":")
        factory = PARSERS.get(kind.strip())
        if factory is None:
            raise ValueError(f"unknown parser kind {kind!r} in {spec!r}; known: "
                             f"{', '.join(sorted(PARSERS))}")
        read, key = factory(argument, score_max)
        return cls(spec, kind.strip(), argument, read, key)


def read_value(value: Any, scale: tuple[float, float],
               labels: Mapping[str, float] | None = None) -> float:
    """The raw ``value`` as a number on ``scale``: a label's number, or the number itself.

    Raises ScoreParseError when it is neither a known label nor a finite number within
    the scale (booleans are not numbers here).
    """
    low, high = scale
    shown = excerpt(repr(value))
    if labels:
        key = value.strip() if isinstance(value, str) else value
        if isinstance(key, str) and key in labels:
            return float(labels[key])
        raise ScoreParseError(f"the answer {shown} is not one of the labels "
                              f"{', '.join(map(str, labels))}", value=excerpt(str(value)))
    number = _number(value)
    if number is None:
        raise ScoreParseError(f"the answer {shown} is not a number", value=excerpt(str(value)))
    if not low <= number <= high:
        raise ScoreParseError(f"the score {_fmt(number)} is outside the scale "
                              f"{_fmt(low)}-{_fmt(high)}", value=excerpt(str(value)))
    return number


# -- the parsers ------------------------------------------------------------------------


def _score_line(argument: str, score_max: float) -> tuple[Callable[[str], Any], str]:
    if argument:
        raise ValueError(f"score_line takes no argument, got {argument!r}")
    return (lambda text: parse_score(text, score_max)), "score"


def _regex(argument: str, _: float) -> tuple[Callable[[str], Any], str]:
    try:
        pattern = re.compile(argument)
    except re.error as exc:
        raise ValueError(f"regex parser: {argument!r} is not a valid pattern ({exc})") from None
    if pattern.groups != 1:
        raise ValueError(f"regex parser: the pattern needs exactly one group, "
                         f"{argument!r} has {pattern.groups}")

    def read(text: str) -> Any:
        matches = list(pattern.finditer(_text(text)))
        if not matches:
            raise ScoreParseError(f"no match for /{argument}/ in the judge output "
                                  f"(starts with {excerpt(text)!r})")
        return matches[-1].group(1)

    return read, "score"


def _json(argument: str, _: float) -> tuple[Callable[[str], Any], str]:
    key = _key("json", argument)

    def read(text: str) -> Any:
        _text(text)  # not text, or nothing outside <think>: the same errors as the others
        return last_json_value(text, key)

    return read, key


def _yaml(argument: str, _: float) -> tuple[Callable[[str], Any], str]:
    key = _key("yaml", argument)
    # Keys match in any case ("Score: 0.3" is what a model writes for "score"), as lines
    # outside fences ("bare") or in a fenced block's mapping.
    bare = re.compile(rf"^[ \t>*_`-]*{re.escape(key)}[*_`]*[ \t]*:[ \t]*(?P<v>.*?)[ \t]*$",
                      re.MULTILINE | re.IGNORECASE)

    def read(text: str) -> Any:
        import yaml

        text = _text(text)
        found: list[tuple[int, Any]] = []
        outside = []
        last = 0
        for block in _FENCED.finditer(text):
            outside.append((last, text[last:block.start()]))
            last = block.end()
            try:
                data = yaml.safe_load(block.group(3))
            except Exception:  # YAMLError, and e.g. ValueError for a date like 2024-13-45
                data = None  # not an answer; parsers do not log
            if isinstance(data, dict):
                same = [v for k, v in data.items() if str(k).lower() == key.lower()]
                if same:
                    found.append((block.start(), same[-1]))
        outside.append((last, text[last:]))
        for offset, chunk in outside:
            for line in bare.finditer(chunk):
                try:
                    value = yaml.safe_load(line["v"]) if line["v"] else None
                except Exception:
                    value = line["v"]
                found.append((offset + line.start(), value))
        if not found:
            raise ScoreParseError(f"no YAML {key!r} key in the judge output "
                                  f"(starts with {excerpt(text)!r})")
        return max(found, key=lambda pair: pair[0])[1]

    return read, key


def _python(argument: str, _: float) -> tuple[Callable[[str], Any], str]:
    module, sep, function = argument.rpartition(":")
    if not sep or not module or not function.isidentifier():
        raise ValueError(f"python parser must look like python:<module>:<function>, "
                         f"got python:{argument}")
    target: list[Callable[[str], Any]] = []

    def read(text: str) -> Any:
        # Imported on first use, in the worker that parses; an import failure is a
        # parse_error on every verdict (visible), never a dead worker.
        try:
            if not target:
                target.append(getattr(importlib.import_module(module), function))
            return target[0](_text(text))
        except ScoreParseError:
            raise
        except Exception as exc:
            raise ScoreParseError(f"parser python:{argument} raised {type(exc).__name__}: "
                                  f"{excerpt(str(exc))}") from None

    return read, "score"


#: parser kind -> factory(argument, score_max) -> (read, structured key)
PARSERS: Mapping[str, Callable[[str, float], tuple[Callable[[str], Any], str]]] = {
    "score_line": _score_line,
    "regex": _regex,
    "json": _json,
    "yaml": _yaml,
    "python": _python,
}


# -- helpers ----------------------------------------------------------------------------


def _text(text: object) -> str:
    if not isinstance(text, str):
        raise ScoreParseError(f"judge output must be text, got {type(text).__name__}")
    text = strip_think(text)
    if not text.strip():
        raise ScoreParseError("judge output is empty (outside <think> spans)")
    return text


def _key(kind: str, argument: str) -> str:
    if not _KEY.fullmatch(argument):
        raise ValueError(f"{kind} parser needs a key, as in {kind}:score; got "
                         f"{kind}:{argument}")
    return argument


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            return None
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip().rstrip(".")):
        number = float(value.strip().rstrip("."))
    else:
        return None
    return number if math.isfinite(number) else None


def _fmt(value: float) -> str:
    return f"{value:g}"
