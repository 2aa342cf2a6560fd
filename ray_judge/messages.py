"""Chat messages in the OpenAI shape, checked where a request is built.

A ``prompt`` or ``response`` may be a list of messages (a trajectory) instead of text.
:func:`check_messages` refuses a malformed one with a ValueError or TypeError naming the
field, the message's index and the key (``response[2].tool_calls[0].function.name``), so
a bad trajectory fails in the caller, not in a worker. How a judge reads a trajectory is
:mod:`ray_judge.judging.transcript`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import shown

__all__ = ["TEXT_PART_TYPES", "check_messages", "is_messages"]

#: the content part types whose ``text`` a judge reads
TEXT_PART_TYPES = ("text", "input_text", "output_text")


def is_messages(value: object) -> bool:
    """True for a list or tuple (a trajectory), False for text."""
    return isinstance(value, (list, tuple))


def check_messages(field: str, messages: Sequence[Any]) -> None:
    """Raise ValueError/TypeError naming ``field[index].key`` for a malformed message."""
    if not messages:
        raise ValueError(f"{field} is an empty list of messages")
    for index, message in enumerate(messages):
        where = f"{field}[{index}]"
        if not isinstance(message, Mapping):
            raise TypeError(f"{where} must be a dict with 'role' and 'content', got "
                            f"{type(message).__name__}: {shown(message)}")
        role = message.get("role")
        if not isinstance(role, str) or not role.strip():
            raise ValueError(f"{where}.role must be a non-empty string, got {shown(role)}")
        _optional_text(message, "name", where)
        _optional_text(message, "tool_call_id", where)
        content = message.get("content")
        if isinstance(content, (list, tuple)):
            for p, part in enumerate(content):
                _check_part(part, f"{where}.content[{p}]")
        elif content is not None and not isinstance(content, str):
            raise TypeError(f"{where}.content must be text, a list of parts or None, got "
                            f"{type(content).__name__}: {shown(content)}")
        calls = message.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, (list, tuple)):
                raise TypeError(f"{where}.tool_calls must be a list, got "
                                f"{type(calls).__name__}: {shown(calls)}")
            for c, call in enumerate(calls):
                _check_call(call, f"{where}.tool_calls[{c}]")
        if content is None and not calls:
            raise ValueError(f"{where} has neither content nor tool_calls")


def _check_part(part: Any, where: str) -> None:
    if isinstance(part, str):
        raise TypeError(f"{where} must be a dict such as {{'type': 'text', 'text': ...}}, "
                        f"got a string: {shown(part)}")
    if not isinstance(part, Mapping):
        raise TypeError(f"{where} must be a dict with a 'type', got {type(part).__name__}: "
                        f"{shown(part)}")
    kind = part.get("type")
    if not isinstance(kind, str):
        raise ValueError(f"{where}.type must be a string, got {shown(kind)}")
    if kind in TEXT_PART_TYPES and not isinstance(part.get("text"), str):
        raise TypeError(f"{where}.text must be a string, got {shown(part.get('text'))}")


def _check_call(call: Any, where: str) -> None:
    if not isinstance(call, Mapping):
        raise TypeError(f"{where} must be a dict with 'function', got "
                        f"{type(call).__name__}: {shown(call)}")
    _optional_text(call, "id", where)
    function = call.get("function")
    if not isinstance(function, Mapping):
        raise TypeError(f"{where}.function must be a dict with 'name' and 'arguments', got "
                        f"{shown(function)}")
    if not isinstance(function.get("name"), str):
        raise TypeError(f"{where}.function.name must be a string, got "
                        f"{shown(function.get('name'))}")
    arguments = function.get("arguments", "")
    if not isinstance(arguments, (str, Mapping)):
        raise TypeError(f"{where}.function.arguments must be a JSON string or a dict, got "
                        f"{type(arguments).__name__}: {shown(arguments)}")


def _optional_text(mapping: Mapping[str, Any], key: str, where: str) -> None:
    value = mapping.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{where}.{key} must be a string, got {type(value).__name__}: "
                        f"{shown(value)}")
