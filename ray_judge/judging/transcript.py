"""A chat trajectory as a readable transcript: what a judge reads when ``prompt`` or
``response`` is a list of messages in the OpenAI shape.

Each message becomes a numbered turn headed by its role (and ``name``); text content
and text parts are kept as they are, other parts (images, audio) are named in brackets,
an assistant's tool calls are listed with their arguments, and a tool result names the
call it answers::

    [1] user
    Fix the failing test.

    [2] assistant
    Let me look.
    -> tool call call_1: bash {"command": "pytest -x"}

    [3] tool (answers call_1)
    ===== 1 failed =====

The transcript is data like any other field: it goes into a delimited block and is
cut only by the judge's ``max_input_chars``. A malformed message raises ValueError or
TypeError naming the field, the message's index and the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["check_messages", "inputs", "is_messages", "render_transcript"]

_TEXT_PART_TYPES = ("text", "input_text", "output_text")


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
                            f"{type(message).__name__}: {_preview(message)}")
        role = message.get("role")
        if not isinstance(role, str) or not role.strip():
            raise ValueError(f"{where}.role must be a non-empty string, got {_preview(role)}")
        _optional_text(message, "name", where)
        _optional_text(message, "tool_call_id", where)
        content = message.get("content")
        if isinstance(content, (list, tuple)):
            for p, part in enumerate(content):
                _check_part(part, f"{where}.content[{p}]")
        elif content is not None and not isinstance(content, str):
            raise TypeError(f"{where}.content must be text, a list of parts or None, got "
                            f"{type(content).__name__}: {_preview(content)}")
        calls = message.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, (list, tuple)):
                raise TypeError(f"{where}.tool_calls must be a list, got "
                                f"{type(calls).__name__}: {_preview(calls)}")
            for c, call in enumerate(calls):
                _check_call(call, f"{where}.tool_calls[{c}]")
        if content is None and not calls:
            raise ValueError(f"{where} has neither content nor tool_calls")


def render_transcript(messages: Sequence[Mapping[str, Any]]) -> str:
    """The numbered transcript of already checked ``messages``."""
    turns = []
    for number, message in enumerate(messages, start=1):
        head = f"[{number}] {message['role']}"
        details = []
        if message.get("name"):
            details.append(f"name: {message['name']}")
        if message.get("tool_call_id"):
            details.append(f"answers {message['tool_call_id']}")
        if details:
            head += f" ({', '.join(details)})"
        lines = [head]
        text = _content(message.get("content"))
        if text:
            lines.append(text)
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            arguments = function.get("arguments", "")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
            ident = f" {call['id']}" if call.get("id") else ""
            lines.append(f"-> tool call{ident}: {function.get('name')} {arguments}".rstrip())
        turns.append("\n".join(lines))
    return "\n\n".join(turns)


def sendable(value: Any, where: str) -> str:
    """``value`` as text a backend can send: a trajectory becomes its transcript.

    Raises ValueError naming ``request.<where>`` for text no backend can send (an
    unpaired surrogate, as decoding bytes with ``surrogateescape`` leaves): without this
    every attempt would fail alike, be retried, and end as a backend error.
    """
    text = render_transcript(value) if is_messages(value) else value
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"request.{where} is not valid text: unpaired surrogate "
                         f"{text[exc.start]!r} at index {exc.start}") from None
    return text


def inputs(request: Any) -> dict[str, str]:
    """A request's inputs as text, in block order: prompt, reference (when given),
    response, then its fields; trajectories become transcripts.

    Checked in the request's own field order (prompt, response, reference, fields), as
    the default rubric checks them, so that a request with several bad fields is told
    about the same one whichever judge renders it (ValueError, see :func:`sendable`).
    """
    prompt = sendable(request.prompt, "prompt")
    response = sendable(request.response, "response")
    out = {"prompt": prompt}
    if request.reference is not None:
        out["reference"] = sendable(request.reference, "reference")
    out["response"] = response
    out.update({name: sendable(value, f"fields[{name!r}]")
                for name, value in (request.fields or {}).items()})
    return out


def _content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        kind = part.get("type")
        if kind in _TEXT_PART_TYPES:
            pieces.append(part["text"])
        elif kind == "refusal":
            pieces.append(f"[refusal] {part.get('refusal', '')}")
        else:
            pieces.append(f"[{kind} part]")
    return "\n".join(pieces)


def _check_part(part: Any, where: str) -> None:
    if isinstance(part, str):
        raise TypeError(f"{where} must be a dict such as {{'type': 'text', 'text': ...}}, "
                        f"got a string: {_preview(part)}")
    if not isinstance(part, Mapping):
        raise TypeError(f"{where} must be a dict with a 'type', got {type(part).__name__}: "
                        f"{_preview(part)}")
    kind = part.get("type")
    if not isinstance(kind, str):
        raise ValueError(f"{where}.type must be a string, got {_preview(kind)}")
    if kind in _TEXT_PART_TYPES and not isinstance(part.get("text"), str):
        raise TypeError(f"{where}.text must be a string, got {_preview(part.get('text'))}")


def _check_call(call: Any, where: str) -> None:
    if not isinstance(call, Mapping):
        raise TypeError(f"{where} must be a dict with 'function', got "
                        f"{type(call).__name__}: {_preview(call)}")
    _optional_text(call, "id", where)
    function = call.get("function")
    if not isinstance(function, Mapping):
        raise TypeError(f"{where}.function must be a dict with 'name' and 'arguments', got "
                        f"{_preview(function)}")
    if not isinstance(function.get("name"), str):
        raise TypeError(f"{where}.function.name must be a string, got "
                        f"{_preview(function.get('name'))}")
    arguments = function.get("arguments", "")
    if not isinstance(arguments, (str, Mapping)):
        raise TypeError(f"{where}.function.arguments must be a JSON string or a dict, got "
                        f"{type(arguments).__name__}: {_preview(arguments)}")


def _optional_text(mapping: Mapping[str, Any], key: str, where: str) -> None:
    value = mapping.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{where}.{key} must be a string, got {type(value).__name__}: "
                        f"{_preview(value)}")


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
