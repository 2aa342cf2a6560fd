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

from ..messages import TEXT_PART_TYPES, is_messages

__all__ = ["inputs", "render_transcript"]


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
        if kind in TEXT_PART_TYPES:
            pieces.append(part["text"])
        elif kind == "refusal":
            pieces.append(f"[refusal] {part.get('refusal', '')}")
        else:
            pieces.append(f"[{kind} part]")
    return "\n".join(pieces)


